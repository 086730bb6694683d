//! OCI artifact sources against Debian's `docker-registry` on loopback
//! (tests/support/registry.rs), plain HTTP and htpasswd over TLS:
//! artifacts pushed by `kedge push artifact` and read back by a second
//! client (the registry's HTTP API and GNU tar), polls that cost one HEAD,
//! tag, semver and digest references, layers that climb out, the copy
//! operation, cosign signatures (valid, by another key, for another
//! digest, missing) made by the real `cosign sign` (recorded once, see
//! tests/support/cosign.rs), and `kedge run` applying an artifact on the
//! test control plane.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

use kedge::config::{Config, SourceRef};
use kedge::source::oci::{
    signature_tag, COSIGN_PAYLOAD_MEDIA_TYPE, COSIGN_SIGNATURE_ANNOTATION, FLUX_CONFIG_MEDIA_TYPE,
    FLUX_CONTENT_MEDIA_TYPE,
};
use kedge::source::{self, Limits, SyncOutcome};
use kedge::state::SourceStatus;
use oci_client::client::{ClientConfig, ClientProtocol, Config as BlobConfig, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::support::cosign;
use crate::support::git::test_ca;
use crate::support::registry::{self, Registry};
use crate::support::{artifact_files, reconcile_source};

/// A tree of files on disk.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, content).expect("write");
    }
    dir
}

/// `kedge push artifact`; its printed `oci://…:TAG@sha256:…`, or the error.
fn kedge_push(url: &str, dir: &Path, extra: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(["push", "artifact", url, "--path"])
        .arg(dir)
        .args(["--source", "https://git.example.org/fleet.git"])
        .args([
            "--revision",
            "main@sha1:0123456789abcdef0123456789abcdef01234567",
        ])
        .args(extra)
        .output()
        .expect("run kedge push artifact");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn push_plain(registry: &Registry, repository_tag: &str, dir: &Path) -> String {
    let url = format!("oci://{}/{repository_tag}", registry.host());
    kedge_push(&url, dir, &["--insecure"]).expect("kedge push artifact")
}

/// `sha256:…` of a pushed `oci://…@sha256:…`.
fn digest_of(pushed: &str) -> String {
    pushed
        .rsplit_once('@')
        .map(|(_, digest)| digest.to_string())
        .expect("pushed reference has a digest")
}

/// One `[oci.edge]` source with its state directory.
struct Syncer {
    config: Config,
    state_dir: tempfile::TempDir,
    status: Option<SourceStatus>,
}

impl Syncer {
    fn new(table: &str) -> Syncer {
        let text = format!("[oci.edge]\n{table}\n");
        let config = Config::parse(Path::new("kedge.toml"), &text).expect("valid config");
        Syncer {
            config,
            state_dir: tempfile::tempdir().expect("tempdir"),
            status: None,
        }
    }

    fn sync(&mut self) -> source::Result<SyncOutcome> {
        let source = self
            .config
            .source(&SourceRef::parse("oci/edge").expect("ref"))
            .expect("configured");
        let outcome = source::sync(
            source,
            self.state_dir.path(),
            self.status.as_ref(),
            None,
            None,
            Limits::default(),
            &AtomicBool::new(false),
        )?;
        self.status = Some(outcome.as_status("oci", "edge"));
        Ok(outcome)
    }

    fn new_artifact(&mut self) -> source::Artifact {
        match self.sync() {
            Ok(SyncOutcome::NewArtifact { artifact, .. }) => artifact,
            other => panic!("expected a new artifact, got {other:?}"),
        }
    }

    fn unchanged(&mut self) -> source::Artifact {
        match self.sync() {
            Ok(SyncOutcome::Unchanged { artifact, .. }) => artifact,
            other => panic!("expected no change, got {other:?}"),
        }
    }

    fn failure(&mut self) -> source::Error {
        match self.sync() {
            Err(err) => err,
            Ok(outcome) => panic!("expected a failure, got {outcome:?}"),
        }
    }
}

fn plain_table(registry: &Registry, repository: &str, extra: &str) -> String {
    format!(
        "url = \"oci://{}/{repository}\"\ninsecure = true\n{extra}",
        registry.host()
    )
}

/// One request the registry served.
#[derive(Debug)]
struct Served {
    method: String,
    uri: String,
}

/// Every request in the registry's log, in order.
fn served(registry: &Registry) -> Vec<Served> {
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(name))
            .map(|value| value.trim_matches('"').to_string())
    };
    registry
        .log()
        .lines()
        .filter(|line| line.contains("msg=\"response completed"))
        .map(|line| Served {
            method: field(line, "http.request.method=").unwrap_or_default(),
            uri: field(line, "http.request.uri=").unwrap_or_default(),
        })
        .collect()
}

const SAMPLE: &[(&str, &str)] = &[
    ("apps/a.yaml", "kind: ConfigMap\n"),
    ("apps/b.yaml", "kind: Secret\n"),
    ("README.md", "fleet\n"),
];

#[test]
fn a_pushed_artifact_is_pulled_and_an_unchanged_poll_is_one_head_and_no_download() {
    let registry = registry::start(None, None);
    let files = tree(SAMPLE);
    std::fs::create_dir_all(files.path().join(".git")).expect(".git");
    std::fs::write(files.path().join(".git/HEAD"), "ref: x\n").expect(".git/HEAD");
    let pushed = push_plain(&registry, "fleet/edge:latest", files.path());
    let mut syncer = Syncer::new(&plain_table(&registry, "fleet/edge", ""));
    let artifact = syncer.new_artifact();
    assert_eq!(artifact.revision, format!("latest@{}", digest_of(&pushed)));
    let expected: BTreeMap<String, String> = SAMPLE
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    assert_eq!(artifact_files(&artifact), expected, ".git is left out");

    let before = served(&registry).len();
    assert_eq!(syncer.unchanged(), artifact);
    let poll = &served(&registry)[before..];
    let manifest_requests: Vec<_> = poll
        .iter()
        .filter(|r| r.uri.contains("/manifests/") || r.uri.contains("/blobs/"))
        .collect();
    assert_eq!(manifest_requests.len(), 1, "{poll:?}");
    assert_eq!(manifest_requests[0].method, "HEAD", "{poll:?}");
    assert!(poll.iter().all(|r| !r.uri.contains("/blobs/")), "{poll:?}");

    // A new push of the tag is a new revision.
    std::fs::write(files.path().join("apps/a.yaml"), "kind: ConfigMap # 2\n").expect("edit");
    let again = push_plain(&registry, "fleet/edge:latest", files.path());
    let changed = syncer.new_artifact();
    assert_eq!(changed.revision, format!("latest@{}", digest_of(&again)));
    assert_eq!(
        artifact_files(&changed)["apps/a.yaml"],
        "kind: ConfigMap # 2\n"
    );
}

#[test]
fn kedge_push_is_byte_reproducible_and_a_second_client_reads_flux_s_format() {
    let registry = registry::start(None, None);
    let files = tree(SAMPLE);
    let first = push_plain(&registry, "fleet/repro:a", files.path());
    // The same tree, other file times, another tag: the same manifest.
    let copy = tree(SAMPLE);
    let second = push_plain(&registry, "fleet/repro:b", copy.path());
    assert_eq!(digest_of(&first), digest_of(&second));

    source::install_tls_provider();
    let http = reqwest::blocking::Client::new();
    let base = format!("http://{}/v2/fleet/repro", registry.host());
    let manifest: serde_json::Value = http
        .get(format!("{base}/manifests/a"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("manifest over the registry API");
    assert_eq!(manifest["config"]["mediaType"], FLUX_CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], FLUX_CONTENT_MEDIA_TYPE);
    let annotations = &manifest["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.source"],
        "https://git.example.org/fleet.git"
    );
    assert_eq!(
        annotations["org.opencontainers.image.revision"],
        "main@sha1:0123456789abcdef0123456789abcdef01234567"
    );
    let layer_digest = layers[0]["digest"].as_str().expect("layer digest");
    let blob = http
        .get(format!("{base}/blobs/{layer_digest}"))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes())
        .expect("layer blob");
    let listed = tar_list(&blob);
    assert_eq!(listed, ["README.md", "apps/a.yaml", "apps/b.yaml"]);
}

/// The entries GNU tar reads from a `tar.gz`.
fn tar_list(gz: &[u8]) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new("tar")
        .args(["-tzf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tar");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(gz)
        .expect("feed tar");
    let out = child.wait_with_output().expect("tar output");
    assert!(out.status.success(), "tar refused the layer");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn semver_picks_the_highest_tag_in_range_and_a_digest_pins_one_manifest() {
    let registry = registry::start(None, None);
    let mut digests = BTreeMap::new();
    for version in ["v1.0.0", "v1.1.0", "v2.0.0"] {
        let files = tree(&[("version.txt", version)]);
        let pushed = push_plain(&registry, &format!("fleet/edge:{version}"), files.path());
        digests.insert(version, digest_of(&pushed));
    }
    let mut ranged = Syncer::new(&plain_table(
        &registry,
        "fleet/edge",
        "ref = { semver = \">=1.0.0 <2.0.0\" }",
    ));
    let artifact = ranged.new_artifact();
    assert_eq!(artifact.revision, format!("v1.1.0@{}", digests["v1.1.0"]));
    assert_eq!(artifact_files(&artifact)["version.txt"], "v1.1.0");

    let pinned_digest = &digests["v1.0.0"];
    let mut pinned = Syncer::new(&plain_table(
        &registry,
        "fleet/edge",
        &format!("ref = {{ digest = {pinned_digest:?} }}"),
    ));
    let artifact = pinned.new_artifact();
    assert_eq!(&artifact.revision, pinned_digest);
    assert_eq!(artifact_files(&artifact)["version.txt"], "v1.0.0");
    let before = served(&registry).len();
    assert_eq!(pinned.unchanged(), artifact);
    assert_eq!(
        served(&registry).len(),
        before,
        "a pinned digest needs no request"
    );

    let mut none = Syncer::new(&plain_table(
        &registry,
        "fleet/edge",
        "ref = { semver = \">=3.0.0\" }",
    ));
    let err = none.failure();
    assert!(err.to_string().contains(">=3.0.0"), "{err}");
}

#[test]
fn an_htpasswd_registry_over_tls_needs_the_credentials_for_push_and_pull() {
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca(ca_dir.path());
    let registry = registry::start(Some(("kedge", "s3cret")), Some(&ca));
    let secrets = tempfile::tempdir().expect("tempdir");
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cret\n").expect("password");
    let files = tree(SAMPLE);
    let url = format!("oci://{}/fleet/edge:v1", registry.host());
    let ca_arg = ca.ca_pem.to_string_lossy().into_owned();
    let refused = kedge_push(&url, files.path(), &["--ca-file", &ca_arg]);
    assert!(
        refused.is_err(),
        "an anonymous push is refused: {refused:?}"
    );
    let pushed = kedge_push(
        &url,
        files.path(),
        &[
            "--ca-file",
            &ca_arg,
            "--username",
            "kedge",
            "--password-file",
            &password.to_string_lossy(),
        ],
    )
    .expect("push with credentials");

    let table = |extra: &str| {
        format!(
            "url = \"oci://{}/fleet/edge\"\nref = {{ tag = \"v1\" }}\nca_file = {:?}\n{extra}",
            registry.host(),
            ca.ca_pem
        )
    };
    let mut anonymous = Syncer::new(&table(""));
    let err = anonymous.failure();
    assert_eq!(err.reason(), "OCIArtifactPullFailed", "{err}");

    let mut syncer = Syncer::new(&table(&format!(
        "username = \"kedge\"\npassword_file = {password:?}"
    )));
    let artifact = syncer.new_artifact();
    assert_eq!(artifact.revision, format!("v1@{}", digest_of(&pushed)));
    assert_eq!(artifact_files(&artifact).len(), SAMPLE.len());
    let status = format!("{:?}", syncer.status);
    assert!(!status.contains("s3cret"), "{status}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn plain_client() -> Client {
    source::install_tls_provider();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

/// Pushes one image of `layers` (an empty config) as `repository:tag`.
fn push_image(registry: &Registry, repository: &str, tag: &str, layers: Vec<ImageLayer>) {
    let reference = Reference::with_tag(registry.host(), repository.to_string(), tag.to_string());
    let config = BlobConfig::new(
        b"{}".to_vec(),
        "application/vnd.oci.image.config.v1+json".to_string(),
        None,
    );
    runtime()
        .block_on(plain_client().push(&reference, &layers, config, &RegistryAuth::Anonymous, None))
        .expect("push image");
}

/// Pushes `signature`, as cosign pushed it, as the `.sig` image of `digest`.
fn push_signature(
    registry: &Registry,
    repository: &str,
    digest: &str,
    signature: &cosign::Signature,
) {
    let layer = ImageLayer::new(
        signature.payload.clone().into_bytes(),
        signature.media_type.clone(),
        Some(signature.annotations.clone()),
    );
    push_image(registry, repository, &signature_tag(digest), vec![layer]);
}

#[test]
fn cosign_signatures_valid_by_another_key_for_another_digest_and_missing() {
    let registry = registry::start(None, None);
    let files = tree(SAMPLE);
    let pushed = push_plain(&registry, "fleet/signed:v1", files.path());
    let digest = digest_of(&pushed);
    let another = tree(&[("version.txt", "another\n")]);
    let another_digest = digest_of(&push_plain(
        &registry,
        "fleet/signed:another",
        another.path(),
    ));
    let by_fleet = cosign::signature(&registry, "fleet/signed", &digest, "fleet");
    let by_other = cosign::signature(&registry, "fleet/signed", &digest, "other");
    let of_another = cosign::signature(&registry, "fleet/signed", &another_digest, "fleet");
    // What kedge reads is what cosign writes.
    assert_eq!(by_fleet.media_type, COSIGN_PAYLOAD_MEDIA_TYPE);
    assert!(
        by_fleet
            .annotations
            .contains_key(COSIGN_SIGNATURE_ANNOTATION),
        "{by_fleet:?}"
    );
    assert!(by_fleet.payload.contains(&digest), "{by_fleet:?}");

    let verify = format!(
        "ref = {{ tag = \"v1\" }}\nverify = {{ cosign_public_key_file = {:?} }}",
        cosign::public_key("fleet")
    );
    let mut syncer = Syncer::new(&plain_table(&registry, "fleet/signed", &verify));

    let missing = syncer.failure();
    assert_eq!(missing.reason(), "VerificationError", "{missing}");
    assert!(missing.to_string().contains("is not signed"), "{missing}");
    assert!(syncer.status.is_none(), "no artifact before verification");

    push_signature(&registry, "fleet/signed", &digest, &by_other);
    let wrong_key = syncer.failure();
    assert_eq!(wrong_key.reason(), "VerificationError", "{wrong_key}");
    assert!(
        wrong_key.to_string().contains("none of the 1 signature(s)"),
        "{wrong_key}"
    );

    push_signature(&registry, "fleet/signed", &digest, &of_another);
    let wrong_digest = syncer.failure();
    assert_eq!(wrong_digest.reason(), "VerificationError", "{wrong_digest}");
    assert!(
        wrong_digest
            .to_string()
            .contains("none of the 1 signature(s)"),
        "{wrong_digest}"
    );

    push_signature(&registry, "fleet/signed", &digest, &by_fleet);
    let artifact = syncer.new_artifact();
    assert_eq!(artifact.revision, format!("v1@{digest}"));
    assert_eq!(syncer.unchanged(), artifact);

    // A new, unsigned push of the tag is refused; the artifact stays the signed one.
    std::fs::write(files.path().join("README.md"), "tampered\n").expect("edit");
    push_plain(&registry, "fleet/signed:v1", files.path());
    let unsigned = syncer.failure();
    assert_eq!(unsigned.reason(), "VerificationError", "{unsigned}");
}

/// A `tar.gz` whose one entry is named `name` as written, `..` and all.
fn raw_tar_gz(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut tar = Vec::new();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn a_layer_climbing_out_or_of_another_media_type_is_refused_and_copy_keeps_it_whole() {
    let registry = registry::start(None, None);
    let climbing = raw_tar_gz("../evil.yaml", b"kind: ConfigMap\n");
    push_image(
        &registry,
        "fleet/hostile",
        "latest",
        vec![ImageLayer::new(
            climbing,
            FLUX_CONTENT_MEDIA_TYPE.to_string(),
            None,
        )],
    );
    let mut syncer = Syncer::new(&plain_table(&registry, "fleet/hostile", ""));
    let err = syncer.failure();
    assert!(matches!(err, source::Error::UnsafeEntry { .. }), "{err:?}");
    assert!(err.to_string().contains("climbs out"), "{err}");

    let annotations = BTreeMap::from([(
        "org.opencontainers.image.title".to_string(),
        "bundle.json".to_string(),
    )]);
    push_image(
        &registry,
        "fleet/other",
        "latest",
        vec![ImageLayer::new(
            b"{\"a\":1}".to_vec(),
            "application/json".to_string(),
            Some(annotations),
        )],
    );
    let mut default = Syncer::new(&plain_table(&registry, "fleet/other", ""));
    let err = default.failure();
    assert!(err.to_string().contains("no layer of media type"), "{err}");
    let mut copy = Syncer::new(&plain_table(
        &registry,
        "fleet/other",
        "layer_selector = { media_type = \"application/json\", operation = \"copy\" }",
    ));
    let artifact = copy.new_artifact();
    assert_eq!(
        artifact_files(&artifact),
        BTreeMap::from([("bundle.json".to_string(), "{\"a\":1}".to_string())])
    );
    let mut extract = Syncer::new(&plain_table(
        &registry,
        "fleet/other",
        "layer_selector = { media_type = \"application/json\" }",
    ));
    let err = extract.failure();
    assert!(err.to_string().contains("is not a tar.gz"), "{err}");
}

/// `kedge run` with an `[oci]` source: its manifests applied on the test
/// control plane, a new push brought by `kedge reconcile source oci/NAME`.
#[tokio::test(flavor = "multi_thread")]
async fn kedge_run_applies_an_oci_artifact_and_a_new_push() {
    use crate::bucket_source::configmap_becomes;
    use crate::kustomization_run::{configmap, run_daemon};
    use crate::support::kedge_cli;
    use crate::support::{cluster, TestNamespace};
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "oci-run").await;
    let registry = registry::start(None, None);
    let files = tree(&[("apps/a.yaml", &configmap("a", "one"))]);
    tokio::task::block_in_place(|| push_plain(&registry, "fleet/edge:latest", files.path()));
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("kedge.toml");
    let log_path = root.path().join("kedge.log");
    let text = format!(
        "[agent]\nstate_dir = {:?}\nkubeconfig = {:?}\nsocket = {:?}\n\n[oci.edge]\n{}\ninterval = \"1h\"\n\n[kustomization.oci-run]\nsource = \"oci/edge\"\npath = \"./apps\"\ninterval = \"1m\"\nretry_interval = \"1s\"\nprune = true\ntarget_namespace = \"{}\"\n",
        root.path().join("state"),
        cluster().kubeconfig,
        root.path().join("kedge.sock"),
        plain_table(&registry, "fleet/edge", ""),
        ns.name,
    );
    std::fs::write(&config, text).expect("config");
    let _daemon = run_daemon(&config, &log_path);
    configmap_becomes(&client, &ns.name, "one", &log_path).await;

    std::fs::write(files.path().join("apps/a.yaml"), configmap("a", "two")).expect("edit");
    tokio::task::block_in_place(|| push_plain(&registry, "fleet/edge:latest", files.path()));
    reconcile_source(&config, "oci/edge");
    configmap_becomes(&client, &ns.name, "two", &log_path).await;
    let status = kedge_cli(&config, &["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("oci/edge") && shown.contains("latest@sha256:"),
        "{shown}"
    );
}

#[test]
fn push_refuses_a_symlink_pointing_outside_the_directory() {
    let registry = registry::start(None, None);
    let files = tree(SAMPLE);
    std::os::unix::fs::symlink("/etc/passwd", files.path().join("apps/passwd")).expect("symlink");
    let url = format!("oci://{}/fleet/edge:latest", registry.host());
    let err = kedge_push(&url, files.path(), &["--insecure"]).expect_err("refused");
    assert!(err.contains("pointing outside"), "{err}");
}
