//! Signed offline bundles: `kedge bundle create` on a machine that fetched
//! a Git repository (over file://), `kedge bundle import` and
//! `[agent] bundle_dir` on a node whose source is bundle-only. Bad bundles
//! (untrusted key, wrong or missing signature, truncated, tampered, path
//! traversal in the layout or in an artifact) change nothing; downgrades
//! are refused unless allowed. The whole flow runs once more inside a
//! network namespace with only loopback, under strace, which proves that
//! no process of kedge tried to connect anywhere but loopback.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::Value;
use sha2::{Digest, Sha256};

use kedge::config::{Config, SourceKind, SourceRef};
use kedge::source::bundle::{self as kedge_bundle, CreateOptions, Packed};
use kedge::source::Artifact;
use kedge::state::{BundleArtifact, Store};

use crate::daemon_common::{stderr, stdout, Daemon};
use crate::helm_release::{chart_files, helper_path};
use crate::support::fetch::fetch_and_record;
use crate::support::git::{ssh_keygen, FixtureRepo};
use crate::support::{cluster, eventually, repo_root, running_as_root, TestNamespace};

fn kedge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
}

fn fleet() -> SourceRef {
    SourceRef::new(SourceKind::Git, "fleet")
}

/// A connected machine: a Git repository fetched into its state, and the
/// fleet's signing key.
struct Connected {
    repo: FixtureRepo,
    config: PathBuf,
    key: PathBuf,
}

impl Connected {
    fn new(root: &Path) -> Connected {
        let repo = FixtureRepo::new(root, "fleet");
        let dir = root.join("connected");
        std::fs::create_dir_all(&dir).expect("mkdir connected");
        let config = dir.join("kedge.toml");
        let text = format!(
            "[agent]\nstate_dir = {:?}\nsocket = {:?}\n\n[git.fleet]\nurl = \"file://{}\"\ninterval = \"1h\"\n",
            dir.join("state").display().to_string(),
            dir.join("kedge.sock").display().to_string(),
            repo.bare.display()
        );
        std::fs::write(&config, text).expect("write connected config");
        let key = dir.join("fleet-key");
        ssh_keygen(&key);
        Connected { repo, config, key }
    }

    /// Commits a kustomization of one ConfigMap `settings` holding `value`
    /// (and the test chart at `charts/web`) and fetches it, as `kedge run`
    /// would.
    fn commit_and_fetch(&self, value: &str) -> Artifact {
        let configmap = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: {value}\n"
        );
        let chart = chart_files(&repo_root().join("tests/fixtures/helm-release/web"));
        let mut files: Vec<(&str, &str)> = chart
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_str()))
            .collect();
        files.push((
            "kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - configmap.yaml\n",
        ));
        files.push(("configmap.yaml", &configmap));
        self.repo.commit(&files, value);
        fetch_and_record(&self.config, &fleet())
    }

    /// `kedge bundle create` of git/fleet, signed with `key`.
    fn bundle_with(&self, key: &Path, out: &Path, sequence: u64, epoch: Option<u64>) -> Output {
        let mut command = kedge();
        command
            .args(["bundle", "create", "git/fleet", "--config"])
            .arg(&self.config)
            .arg("--sign-key")
            .arg(key)
            .arg("-o")
            .arg(out)
            .args(["--sequence", &sequence.to_string()]);
        if let Some(epoch) = epoch {
            command.env("SOURCE_DATE_EPOCH", epoch.to_string());
        }
        command.output().expect("run kedge bundle create")
    }

    fn bundle(&self, out: &Path, sequence: u64) -> PathBuf {
        let output = self.bundle_with(&self.key, out, sequence, None);
        assert!(
            output.status.success(),
            "kedge bundle create: {}",
            stderr(&output)
        );
        out.to_path_buf()
    }
}

/// The air-gapped node: git/fleet is bundle-only, the fleet's public key
/// trusted; with a namespace, a kustomization applies it to the test
/// control plane.
struct Node {
    dir: PathBuf,
    config: PathBuf,
    state_dir: PathBuf,
    socket: PathBuf,
    bundle_dir: PathBuf,
    log: PathBuf,
}

impl Node {
    fn new(root: &Path, trusted_public_key: &Path, namespace: Option<&str>) -> Node {
        let dir = root.join("node");
        let trusted = dir.join("trusted-keys");
        let bundle_dir = dir.join("media");
        std::fs::create_dir_all(&trusted).expect("mkdir trusted-keys");
        std::fs::create_dir_all(&bundle_dir).expect("mkdir bundle dir");
        std::fs::copy(trusted_public_key, trusted.join("fleet.pub")).expect("trust the key");
        let state_dir = dir.join("state");
        let socket = dir.join("kedge.sock");
        let mut text = format!(
            "[agent]\nstate_dir = {:?}\nsocket = {:?}\ntrusted_keys_dir = {:?}\nbundle_dir = {:?}\n",
            state_dir.display().to_string(),
            socket.display().to_string(),
            trusted.display().to_string(),
            bundle_dir.display().to_string(),
        );
        if namespace.is_some() {
            text.push_str(&format!(
                "kubeconfig = {:?}\nhelm_helper = {:?}\n",
                cluster().kubeconfig.display().to_string(),
                helper_path().display().to_string()
            ));
        }
        text.push_str("\n[git.fleet]\nurl = \"bundle:\"\ninterval = \"1h\"\n");
        if let Some(namespace) = namespace {
            text.push_str(&format!(
                "\n[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"1h\"\nprune = true\ntarget_namespace = {namespace:?}\n\
                 \n[helm_release.web]\nchart = {{ source = \"git/fleet\", path = \"charts/web\" }}\ntarget_namespace = {namespace:?}\ninterval = \"1h\"\n"
            ));
        }
        let config = dir.join("kedge.toml");
        std::fs::write(&config, text).expect("write node config");
        Node {
            log: dir.join("kedge.log"),
            dir,
            config,
            state_dir,
            socket,
            bundle_dir,
        }
    }

    fn import(&self, bundle: &Path, extra: &[&str]) -> Output {
        kedge()
            .args(["bundle", "import"])
            .arg(bundle)
            .args(extra)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run kedge bundle import")
    }

    fn bundle_artifact(&self) -> Option<BundleArtifact> {
        let database = self.state_dir.join("kedge.db");
        if !database.exists() {
            return None;
        }
        let store = Store::open_read_only(&database).expect("node state");
        store
            .bundle_artifact("git", "fleet")
            .expect("read bundle state")
    }

    /// Every file in the node's artifact directory of git/fleet.
    fn stored_artifacts(&self) -> Vec<PathBuf> {
        let dir = self.state_dir.join("artifacts/git/fleet");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries.map(|e| e.expect("entry").path()).collect()
    }
}

fn assert_refused(node: &Node, bundle: &Path, phrase: &str) {
    let output = node.import(bundle, &[]);
    let message = stderr(&output);
    assert!(
        !output.status.success(),
        "{} was imported: {}",
        bundle.display(),
        stdout(&output)
    );
    assert!(
        message.contains(&bundle.display().to_string()) && message.contains(phrase),
        "the refusal of {} should name it and say {phrase:?}: {message}",
        bundle.display()
    );
    assert_eq!(node.bundle_artifact(), None, "{message}");
    assert_eq!(node.stored_artifacts(), Vec::<PathBuf>::new(), "{message}");
}

/// A bundle's tar entries, in order, to change and write back.
struct Layout {
    entries: Vec<(String, Vec<u8>)>,
}

impl Layout {
    fn read(file: &Path) -> Layout {
        let mut archive = tar::Archive::new(std::fs::File::open(file).expect("open bundle"));
        let mut entries = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read entry");
            entries.push((path, bytes));
        }
        Layout { entries }
    }

    fn get(&self, path: &str) -> &[u8] {
        &self
            .entries
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no {path} in the bundle"))
            .1
    }

    fn blob(&self, digest: &str) -> &[u8] {
        self.get(&format!(
            "blobs/sha256/{}",
            digest.trim_start_matches("sha256:")
        ))
    }

    fn json(&self, path: &str) -> Value {
        serde_json::from_slice(self.get(path)).expect("JSON")
    }

    fn set(&mut self, path: &str, bytes: Vec<u8>) {
        match self.entries.iter_mut().find(|(p, _)| p == path) {
            Some(entry) => entry.1 = bytes,
            None => self.entries.push((path.to_string(), bytes)),
        }
    }

    /// Adds a blob under its digest; returns `sha256:<hex>`.
    fn put_blob(&mut self, bytes: Vec<u8>) -> String {
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.set(&format!("blobs/sha256/{hex}"), bytes);
        format!("sha256:{hex}")
    }

    fn manifest_descriptor(&self, artifact_type_part: &str) -> Value {
        self.json("index.json")["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| {
                m["artifactType"]
                    .as_str()
                    .is_some_and(|t| t.contains(artifact_type_part))
            })
            .cloned()
            .expect("manifest in index")
    }

    /// Writes the entries; names are written as given, `..` included.
    fn write(&self, out: &Path) {
        let mut builder = tar::Builder::new(std::fs::File::create(out).expect("create"));
        for (path, bytes) in &self.entries {
            builder
                .append(&raw_header(path, bytes.len()), bytes.as_slice())
                .expect("append");
        }
        builder.finish().expect("finish tar");
    }
}

/// The header of a file entry named `path` as given: tar's own setters
/// refuse `..`, which these tests need.
fn raw_header(path: &str, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let name = &mut header.as_gnu_mut().expect("gnu header").name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    header
}

/// A tar.gz holding `entries` (names written as given).
fn tar_gz(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, content) in entries {
        builder
            .append(&raw_header(path, content.len()), content.as_bytes())
            .expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

#[test]
fn every_kind_may_be_bundle_only_and_a_chart_follows_its_repository() {
    let text = "[git.a]\nurl = \"bundle:\"\n\
        [oci.b]\nurl = \"bundle:\"\n\
        [bucket.c]\nendpoint = \"bundle:\"\nbucket_name = \"fleet\"\n\
        [helm_repository.d]\nurl = \"bundle:\"\n\
        [helm_chart.e]\nchart = { repository = \"d\", name = \"web\", version = \"1.x\" }\n\
        [git.online]\nurl = \"https://git.example.org/fleet.git\"\n";
    let config = Config::parse(Path::new("kedge.toml"), text).expect("valid config");
    let bundle_only: Vec<String> = config
        .sources
        .iter()
        .filter(|(_, source)| source.is_bundle_only())
        .map(|(source, _)| source.to_string())
        .collect();
    assert_eq!(
        bundle_only,
        ["git/a", "helm/d", "chart/e", "bucket/c", "oci/b"]
    );
}

#[test]
fn bad_bundles_are_refused_with_their_reason_and_change_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let connected = Connected::new(root.path());
    let artifact = connected.commit_and_fetch("v1");
    let good = connected.bundle(&root.path().join("good.tar"), 1);
    let newer = connected.bundle(&root.path().join("newer.tar"), 2);
    let node = Node::new(root.path(), &connected.key.with_extension("pub"), None);
    let out = |name: &str| root.path().join(name);

    let stranger = root.path().join("stranger-key");
    ssh_keygen(&stranger);
    let untrusted = out("untrusted.tar");
    let made = connected.bundle_with(&stranger, &untrusted, 1, None);
    assert!(made.status.success(), "{}", stderr(&made));
    assert_refused(&node, &untrusted, "which is not in");

    let mut unsigned = Layout::read(&good);
    let mut index = unsigned.json("index.json");
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .retain(|m| {
            !m["artifactType"]
                .as_str()
                .unwrap_or("")
                .contains("signature")
        });
    unsigned.set("index.json", serde_json::to_vec(&index).expect("json"));
    unsigned.write(&out("unsigned.tar"));
    assert_refused(&node, &out("unsigned.tar"), "not signed");

    // The newer bundle's valid signature, by the trusted key, over another manifest.
    let mut wrong = Layout::read(&good);
    let other = Layout::read(&newer);
    let other_signature = other.json(&format!(
        "blobs/sha256/{}",
        other.manifest_descriptor("signature")["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:")
    ));
    let other_layer = other_signature["layers"][0].clone();
    let signature_bytes = other
        .blob(other_layer["digest"].as_str().expect("digest"))
        .to_vec();
    wrong.put_blob(signature_bytes);
    let descriptor = wrong.manifest_descriptor("signature");
    let mut signature_manifest: Value =
        serde_json::from_slice(wrong.blob(descriptor["digest"].as_str().expect("digest")))
            .expect("signature manifest");
    signature_manifest["layers"][0] = other_layer;
    let manifest_bytes = serde_json::to_vec(&signature_manifest).expect("json");
    let size = manifest_bytes.len();
    let digest = wrong.put_blob(manifest_bytes);
    let mut index = wrong.json("index.json");
    for m in index["manifests"].as_array_mut().expect("manifests") {
        if m["artifactType"]
            .as_str()
            .unwrap_or("")
            .contains("signature")
        {
            m["digest"] = Value::from(digest.clone());
            m["size"] = Value::from(size);
        }
    }
    wrong.set("index.json", serde_json::to_vec(&index).expect("json"));
    wrong.write(&out("wrong-signature.tar"));
    assert_refused(&node, &out("wrong-signature.tar"), "does not match");

    let bytes = std::fs::read(&good).expect("read bundle");
    std::fs::write(out("truncated.tar"), &bytes[..bytes.len() / 2]).expect("write");
    assert_refused(&node, &out("truncated.tar"), "truncated");

    let mut tampered = Layout::read(&good);
    let path = format!("blobs/sha256/{}", artifact.digest);
    let mut layer = tampered.get(&path).to_vec();
    let middle = layer.len() / 2;
    layer[middle] ^= 0xff;
    tampered.set(&path, layer);
    tampered.write(&out("tampered.tar"));
    assert_refused(&node, &out("tampered.tar"), "tampered with");

    let mut climbing = Layout::read(&good);
    climbing.set("../../escaped", b"out of the staging directory".to_vec());
    climbing.write(&out("traversal.tar"));
    assert_refused(&node, &out("traversal.tar"), "path traversal");
    assert!(!node.state_dir.join("escaped").exists() && !node.dir.join("escaped").exists());

    let hostile = root.path().join("hostile.tar.gz");
    std::fs::write(
        &hostile,
        tar_gz(&[("../outside.yaml", "kind: ConfigMap\n")]),
    )
    .expect("write");
    let hostile_artifact = Artifact {
        revision: "main@sha1:0000000000000000000000000000000000000000".into(),
        digest: kedge::source::store::sha256_of(std::fs::File::open(&hostile).expect("open"))
            .expect("hash")
            .0,
        path: hostile,
    };
    kedge_bundle::create(
        &[Packed {
            source: fleet(),
            artifact: hostile_artifact,
        }],
        &CreateOptions {
            sign_key: &connected.key,
            sequence: 1,
            created_at: SystemTime::now(),
        },
        &out("unsafe-artifact.tar"),
    )
    .expect("a signed bundle of a hostile artifact");
    assert_refused(&node, &out("unsafe-artifact.tar"), "climbs out");

    let events = kedge()
        .args(["events", "bundle/tampered.tar", "--config"])
        .arg(&node.config)
        .output()
        .expect("kedge events");
    assert!(
        stdout(&events).contains("BundleRefused") && stdout(&events).contains("tampered with"),
        "{}{}",
        stdout(&events),
        stderr(&events)
    );

    // The same checks let a good bundle through.
    let imported = node.import(&good, &[]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert_eq!(
        node.bundle_artifact().map(|a| a.digest),
        Some(artifact.digest)
    );
}

#[test]
fn a_downgrade_is_refused_unless_allowed_and_a_reimport_changes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let connected = Connected::new(root.path());
    let first = connected.commit_and_fetch("v1");
    let old = connected.bundle(&root.path().join("old.tar"), 1);
    let second = connected.commit_and_fetch("v2");
    let new = connected.bundle(&root.path().join("new.tar"), 2);
    let node = Node::new(root.path(), &connected.key.with_extension("pub"), None);
    let current = || node.bundle_artifact().map(|a| (a.sequence, a.digest));

    let imported = node.import(&new, &[]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        stdout(&imported).contains("imported git/fleet"),
        "{}",
        stdout(&imported)
    );
    assert_eq!(current(), Some((2, second.digest.clone())));

    let refused = node.import(&old, &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("sequence 1 is older than 2"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(current(), Some((2, second.digest.clone())));

    let again = node.import(&new, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("nothing new"), "{}", stdout(&again));

    let allowed = node.import(&old, &["--allow-downgrade"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(current(), Some((1, first.digest)));
}

#[test]
fn a_bundle_is_an_oci_layout_reproducible_apart_from_its_creation_time() {
    let root = tempfile::tempdir().expect("tempdir");
    let connected = Connected::new(root.path());
    connected.commit_and_fetch("v1");
    let make = |name: &str, epoch: u64| {
        let out = root.path().join(name);
        let made = connected.bundle_with(&connected.key, &out, 7, Some(epoch));
        assert!(made.status.success(), "{}", stderr(&made));
        std::fs::read(out).expect("read bundle")
    };
    let (a, b, later) = (
        make("a.tar", 1_700_000_000),
        make("b.tar", 1_700_000_000),
        make("c.tar", 1_700_000_001),
    );
    assert!(a == b, "the same inputs must give the same bytes");
    assert!(a != later, "the creation time is part of the bundle");

    // GNU tar reads it; the layout has its three kinds of entries only.
    let listed = Command::new("tar")
        .arg("-tf")
        .arg(root.path().join("a.tar"))
        .output()
        .expect("run tar");
    let names = String::from_utf8_lossy(&listed.stdout).into_owned();
    let mut lines = names.lines();
    assert_eq!(lines.next(), Some("oci-layout"));
    assert_eq!(lines.next(), Some("index.json"));
    assert!(lines.all(|l| l.starts_with("blobs/sha256/")), "{names}");
    let layout = Layout::read(&root.path().join("a.tar"));
    let manifest = layout.json(&format!(
        "blobs/sha256/{}",
        layout.manifest_descriptor("bundle.v1")["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:")
    ));
    let contents: Value = serde_json::from_slice(
        layout.blob(
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        ),
    )
    .expect("contents");
    assert_eq!(contents["sequence"], 7);
    assert_eq!(contents["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(contents["artifacts"][0]["source"], "git/fleet");
}

/// Connections in an `strace -e trace=connect` log to anything but a unix
/// socket, netlink, 127.0.0.0/8 or ::1.
fn outbound_connects(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|line| line.contains("connect(") && line.contains("sa_family="))
        .filter(|line| {
            let local = line.contains("sa_family=AF_UNIX")
                || line.contains("sa_family=AF_NETLINK")
                || line.contains("sa_family=AF_UNSPEC")
                || line.contains("inet_addr(\"127.")
                || line.contains("\"::1\"")
                || line.contains("\"::ffff:127.");
            !local
        })
        .map(str::to_string)
        .collect()
}

fn traced(log: &Path, program: &str) -> Command {
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "trace=connect", "-o"])
        .arg(log)
        .arg(program);
    command
}

#[test]
fn the_outbound_connection_check_catches_a_deliberate_connect() {
    assert!(
        running_as_root(),
        "network namespaces need root (CI runs the tests as root)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let attempt = |name: &str, target: &str| {
        let log = dir.path().join(name);
        let status = Command::new("unshare")
            .args(["-n", "strace", "-f", "-qq", "-e", "trace=connect", "-o"])
            .arg(&log)
            .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{target}/80")])
            .stderr(Stdio::null())
            .status()
            .expect("run unshare -n strace bash");
        assert!(!status.success(), "nothing listens in an empty namespace");
        std::fs::read_to_string(log).expect("strace log")
    };
    let outbound = outbound_connects(&attempt("out.trace", "10.1.2.3"));
    assert!(
        outbound.iter().any(|line| line.contains("10.1.2.3")),
        "the check must catch a connect to 10.1.2.3: {outbound:?}"
    );
    let loopback = attempt("loopback.trace", "127.0.0.1");
    assert!(loopback.contains("127.0.0.1"), "{loopback}");
    assert_eq!(outbound_connects(&loopback), Vec::<String>::new());
}

/// `data.value` of ConfigMap `settings`, if it exists.
async fn settings_value(configmaps: &Api<ConfigMap>) -> Option<String> {
    configmaps
        .get_opt("settings")
        .await
        .ok()
        .flatten()
        .and_then(|cm| cm.data)
        .and_then(|data| data.get("value").cloned())
}

/// Runs the air-gapped flow in a network namespace of its own, holding
/// only loopback: the control plane, kedge and every CLI call.
#[test]
fn an_air_gapped_node_converges_from_bundles_without_any_outbound_connection() {
    assert!(
        running_as_root(),
        "network namespaces need root (CI runs the tests as root)"
    );
    let test_binary = std::env::current_exe().expect("test binary");
    let output = Command::new("unshare")
        .arg("-n")
        .arg(test_binary)
        .args([
            "bundle::air_gapped_flow_in_this_namespace",
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KEDGE_TEST_NETNS", "1")
        // Found (or built, which needs the Go module proxy) out here.
        .env("KEDGE_HELM_BIN", helper_path())
        .output()
        .expect("run unshare -n");
    let all = format!("{}\n{}", stdout(&output), stderr(&output));
    assert!(
        output.status.success() && all.contains("1 passed"),
        "the flow in the namespace failed:\n{all}"
    );
}

/// The flow itself; only run by the test above, inside the namespace.
#[tokio::test]
#[ignore = "run inside a network namespace by an_air_gapped_node_converges_from_bundles_without_any_outbound_connection"]
async fn air_gapped_flow_in_this_namespace() {
    assert_eq!(
        std::env::var("KEDGE_TEST_NETNS").as_deref(),
        Ok("1"),
        "run by its wrapper, inside `unshare -n`"
    );
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up");
    let links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip");
    let links = stdout(&links);
    assert_eq!(links.lines().count(), 1, "only loopback: {links}");

    let client = cluster().client().await;
    let namespace = TestNamespace::new(&client, "bundle").await;
    let root = tempfile::tempdir().expect("tempdir");
    let connected = Connected::new(root.path());
    connected.commit_and_fetch("v1");
    let first = connected.bundle(&root.path().join("first.tar"), 1);
    let node = Node::new(
        root.path(),
        &connected.key.with_extension("pub"),
        Some(&namespace.name),
    );

    let daemon_trace = node.dir.join("daemon.trace");
    let log = std::fs::File::create(&node.log).expect("log");
    let strace = traced(&daemon_trace, env!("CARGO_BIN_EXE_kedge"))
        .args(["run", "--config"])
        .arg(&node.config)
        .env("KEDGE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("strace kedge run");
    let mut daemon = Daemon(strace);
    let log_text = || std::fs::read_to_string(&node.log).unwrap_or_default();
    eventually(Duration::from_secs(30), "the control socket", || async {
        std::os::unix::net::UnixStream::connect(&node.socket).is_ok()
    })
    .await;
    let status = || {
        let shown = kedge()
            .args(["status", "--config"])
            .arg(&node.config)
            .output()
            .expect("kedge status");
        stdout(&shown)
    };
    eventually(
        Duration::from_secs(30),
        "git/fleet waiting for a bundle",
        || async { status().contains("no bundle carrying it has been imported yet") },
    )
    .await;

    let import_trace = node.dir.join("import.trace");
    let imported = traced(&import_trace, env!("CARGO_BIN_EXE_kedge"))
        .args(["bundle", "import"])
        .arg(&first)
        .arg("--config")
        .arg(&node.config)
        .output()
        .expect("strace kedge bundle import");
    assert!(
        imported.status.success(),
        "{}\n{}",
        stderr(&imported),
        log_text()
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace.name);
    let applied = |value: &'static str, what: &'static str| {
        let configmaps = configmaps.clone();
        eventually(Duration::from_secs(60), what, move || {
            let configmaps = configmaps.clone();
            async move { settings_value(&configmaps).await.as_deref() == Some(value) }
        })
    };
    applied("v1", "v1 applied from the imported bundle").await;
    eventually(
        Duration::from_secs(120),
        "helm_release/web installed from the chart in the bundle",
        || async {
            status().lines().any(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.first() == Some(&"helm_release/web") && cells.get(3) == Some(&"True")
            })
        },
    )
    .await;

    // A newer bundle copied onto the "USB stick" is found and applied.
    connected.commit_and_fetch("v2");
    connected.bundle(&node.bundle_dir.join("second.tar"), 2);
    applied("v2", "v2 applied from bundle_dir").await;
    let shown = status();
    assert!(
        shown.contains("second.tar") && shown.contains("BUNDLE") && shown.contains("git/fleet"),
        "{shown}"
    );

    let kedge_pid = Command::new("pgrep")
        .args(["-P", &daemon.0.id().to_string()])
        .output()
        .expect("pgrep");
    let kedge_pid = stdout(&kedge_pid).trim().to_string();
    assert!(!kedge_pid.is_empty(), "kedge run under strace");
    Command::new("kill")
        .args(["-TERM", &kedge_pid])
        .status()
        .expect("kill");
    let _ = daemon.0.wait();

    let mut traces = BTreeMap::new();
    for trace in [&daemon_trace, &import_trace] {
        traces.insert(
            trace.clone(),
            std::fs::read_to_string(trace).expect("trace"),
        );
    }
    let daemon_connects = &traces[&daemon_trace];
    assert!(
        daemon_connects.contains("inet_addr(\"127.0.0.1\")"),
        "strace saw kedge reach the API server on loopback, so it sees connects: {daemon_connects}"
    );
    for (trace, text) in &traces {
        let outbound = outbound_connects(text);
        assert!(
            outbound.is_empty(),
            "{} shows connection attempts beyond loopback: {outbound:#?}",
            trace.display()
        );
    }
}
