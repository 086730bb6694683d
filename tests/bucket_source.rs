//! Bucket sources against versitygw on loopback (tests/support/s3.rs), a
//! real S3 gateway that checks SigV4: the first artifact, polls that cost
//! one LIST, one GET per changed object, deletions, prefixes, ignore rules,
//! wrong credentials, a server that goes away and comes back, limits, a
//! bucket of 10,000 objects, and `kedge run` applying a bucket's manifests
//! on the test control plane. Hostile keys come from a hostile server
//! (versitygw itself refuses such keys).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kedge::config::{Config, Source, SourceKind, SourceRef};
use kedge::source::{self, Limits, SyncOutcome};
use kedge::state::SourceStatus;

use crate::support::s3::{self, status_after, S3Server};
use crate::support::{kedge_cli, reconcile_source};

/// A bucket `fleet` and a config for source `bucket/fleet` of it.
struct Bucket {
    root: tempfile::TempDir,
    server: S3Server,
    client: std::sync::Arc<object_store::aws::AmazonS3>,
}

impl Bucket {
    fn new() -> Bucket {
        let root = tempfile::tempdir().expect("tempdir");
        let server = S3Server::start(root.path(), &["fleet"]);
        let client = server.client("fleet");
        Bucket {
            root,
            server,
            client,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn table(&self, extra: &str) -> String {
        self.server.table(extra)
    }

    fn source(&self, extra: &str) -> Source {
        self.server.source(&self.state_dir(), extra)
    }
}

/// One sync, blocking as the scheduler runs it (off the async threads).
fn sync(
    source: &Source,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
) -> source::Result<SyncOutcome> {
    tokio::task::block_in_place(|| {
        source::sync(
            source,
            state_dir,
            previous,
            None,
            None,
            Limits::default(),
            &AtomicBool::new(false),
        )
    })
}

/// The files of an outcome's artifact: path → content.
fn files_of(outcome: &SyncOutcome) -> BTreeMap<String, String> {
    crate::support::artifact_files(outcome.artifact())
}

const LIST: &str = "s3_ListObjectsV2";
const GET: &str = "s3_GetObject";

#[tokio::test(flavor = "multi_thread")]
async fn first_artifact_then_an_unchanged_poll_costs_one_list_and_no_download() {
    let bucket = Bucket::new();
    s3::put(&bucket.client, "apps/a.yaml", "a: 1\n").await;
    s3::put(&bucket.client, "apps/b.yaml", "b: 1\n").await;
    s3::put(&bucket.client, "root.yaml", "r: 1\n").await;
    let source = bucket.source("");

    let first = sync(&source, &bucket.state_dir(), None).expect("first sync");
    assert!(matches!(first, SyncOutcome::NewArtifact { .. }));
    assert!(
        first.artifact().revision.starts_with("sha256:"),
        "{}",
        first.artifact().revision
    );
    assert_eq!(
        files_of(&first),
        BTreeMap::from([
            ("apps/a.yaml".into(), "a: 1\n".into()),
            ("apps/b.yaml".into(), "b: 1\n".into()),
            ("root.yaml".into(), "r: 1\n".into()),
        ])
    );
    assert_eq!(bucket.server.count(GET), 3);

    let before = bucket.server.requests().len();
    let second = sync(&source, &bucket.state_dir(), Some(&status_after(&first))).expect("poll");
    assert!(
        matches!(second, SyncOutcome::Unchanged { .. }),
        "{second:?}"
    );
    assert_eq!(second.artifact(), first.artifact());
    let during: Vec<String> = bucket.server.requests()[before..]
        .iter()
        .map(|(op, _)| op.clone())
        .collect();
    assert_eq!(
        during,
        vec![LIST.to_string()],
        "an unchanged poll is one LIST"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_object_costs_one_get_and_a_deleted_one_leaves_the_artifact() {
    let bucket = Bucket::new();
    for name in ["a", "b", "c", "d"] {
        s3::put(
            &bucket.client,
            &format!("{name}.yaml"),
            &format!("{name}: 1\n"),
        )
        .await;
    }
    let source = bucket.source("");
    let first = sync(&source, &bucket.state_dir(), None).expect("first sync");

    s3::put(&bucket.client, "b.yaml", "b: 2\n").await;
    let before = bucket.server.requests();
    let second = sync(&source, &bucket.state_dir(), Some(&status_after(&first))).expect("sync");
    assert!(matches!(second, SyncOutcome::NewArtifact { .. }));
    assert_ne!(second.artifact().revision, first.artifact().revision);
    let during = &bucket.server.requests()[before.len()..];
    let gets: Vec<&str> = during
        .iter()
        .filter(|(op, _)| op == GET)
        .map(|(_, key)| key.as_str())
        .collect();
    assert_eq!(
        gets,
        vec!["b.yaml"],
        "only the changed object is downloaded"
    );
    assert_eq!(
        files_of(&second).get("b.yaml").map(String::as_str),
        Some("b: 2\n")
    );

    s3::delete(&bucket.client, "c.yaml").await;
    let before = bucket.server.count(GET);
    let third = sync(&source, &bucket.state_dir(), Some(&status_after(&second))).expect("sync");
    assert_eq!(
        bucket.server.count(GET),
        before,
        "a deletion downloads nothing"
    );
    let files = files_of(&third);
    assert!(!files.contains_key("c.yaml"), "{files:?}");
    assert_eq!(files.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_selects_its_objects_as_the_artifact_root() {
    let bucket = Bucket::new();
    s3::put(&bucket.client, "clusters/edge-1/apps/a.yaml", "a\n").await;
    s3::put(&bucket.client, "clusters/edge-1/b.yaml", "b\n").await;
    s3::put(&bucket.client, "clusters/edge-10/c.yaml", "c\n").await;
    s3::put(&bucket.client, "other.yaml", "o\n").await;
    let source = bucket.source("prefix = \"clusters/edge-1/\"");
    let outcome = sync(&source, &bucket.state_dir(), None).expect("sync");
    assert_eq!(
        files_of(&outcome).keys().cloned().collect::<Vec<_>>(),
        vec!["apps/a.yaml".to_string(), "b.yaml".to_string()]
    );
    assert_eq!(
        bucket.server.count(GET),
        2,
        "nothing outside the prefix is downloaded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ignore_rules_drop_objects_before_they_are_downloaded() {
    let bucket = Bucket::new();
    s3::put(&bucket.client, ".sourceignore", "secret/\n").await;
    s3::put(&bucket.client, "apps/a.yaml", "a\n").await;
    s3::put(&bucket.client, "apps/README.md", "docs\n").await;
    s3::put(&bucket.client, "secret/key.yaml", "k\n").await;
    s3::put(&bucket.client, "logo.png", "png\n").await;
    let source = bucket.source("ignore = [\"*.md\"]");
    let outcome = sync(&source, &bucket.state_dir(), None).expect("sync");
    assert_eq!(
        files_of(&outcome).keys().cloned().collect::<Vec<_>>(),
        vec![".sourceignore".to_string(), "apps/a.yaml".to_string()]
    );
    let got: Vec<String> = bucket
        .server
        .requests()
        .into_iter()
        .filter(|(op, _)| op == GET)
        .map(|(_, k)| k)
        .collect();
    assert_eq!(got.len(), 2, "only .sourceignore and a.yaml: {got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_name_the_bucket_and_never_the_secret() {
    let bucket = Bucket::new();
    s3::put(&bucket.client, "a.yaml", "a\n").await;
    let wrong = bucket.root.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret-zz91\n").expect("write");
    let source = bucket.source("");
    let Source::Bucket(mut table) = source else {
        panic!("a bucket")
    };
    table.secret_access_key_file = Some(wrong);
    let err = sync(&Source::Bucket(table), &bucket.state_dir(), None).expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("bucket fleet"), "{message}");
    assert!(message.contains("access denied"), "{message}");
    assert!(!message.contains("not-the-secret-zz91"), "{message}");
    assert!(!message.contains(s3::SECRET_ACCESS_KEY), "{message}");
    assert_eq!(err.reason(), "BucketOperationFailed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_fails_the_sync_keeps_the_artifact_and_recovers_when_back() {
    let mut bucket = Bucket::new();
    s3::put(&bucket.client, "a.yaml", "a\n").await;
    let source = bucket.source("timeout = \"5s\"");
    let first = sync(&source, &bucket.state_dir(), None).expect("first sync");
    let previous = status_after(&first);

    bucket.server.stop();
    let err = sync(&source, &bucket.state_dir(), Some(&previous)).expect_err("server down");
    assert!(err.to_string().contains("bucket fleet"), "{err}");
    assert_eq!(err.reason(), "BucketOperationFailed");
    source::store::verify(first.artifact()).expect("the last good artifact stays intact");

    bucket.server.resume();
    let back = sync(&source, &bucket.state_dir(), Some(&previous)).expect("server back");
    assert!(matches!(back, SyncOutcome::Unchanged { .. }), "{back:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_on_object_count_and_total_size_refuse_before_downloading() {
    let bucket = Bucket::new();
    for name in ["a", "b", "c"] {
        s3::put(&bucket.client, &format!("{name}.yaml"), "0123456789\n").await;
    }
    let err =
        sync(&bucket.source("max_objects = 2"), &bucket.state_dir(), None).expect_err("too many");
    assert!(err.to_string().contains("more than 2 objects"), "{err}");
    let err = sync(
        &bucket.source("max_total_bytes = 20"),
        &bucket.state_dir(),
        None,
    )
    .expect_err("too large");
    assert!(err.to_string().contains("over the"), "{err}");
    assert_eq!(bucket.server.count(GET), 0, "nothing downloaded");
    let artifacts = bucket.state_dir().join("artifacts/bucket/fleet");
    let stored = std::fs::read_dir(&artifacts)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "no artifact, partial or whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_artifact_is_rebuilt_from_the_cache_without_the_network() {
    let mut bucket = Bucket::new();
    s3::put(&bucket.client, "a.yaml", "a\n").await;
    let source = bucket.source("");
    let first = sync(&source, &bucket.state_dir(), None).expect("first sync");
    std::fs::write(&first.artifact().path, b"damaged").expect("damage");
    bucket.server.stop();
    let restored = source::restore(
        &source,
        &bucket.state_dir(),
        &status_after(&first),
        Limits::default(),
    )
    .expect("restored")
    .expect("it was damaged");
    assert_eq!(restored.artifact, *first.artifact());
    source::store::verify(first.artifact()).expect("intact again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_of_ten_thousand_objects_syncs_and_an_unchanged_poll_downloads_nothing() {
    let bucket = Bucket::new();
    let objects: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|i| {
            (
                format!("apps/{:02}/cm-{i:05}.yaml", i % 50),
                format!("i: {i}\n").into_bytes(),
            )
        })
        .collect();
    s3::put_all(&bucket.client, objects).await;
    let source = bucket.source("");
    let first = sync(&source, &bucket.state_dir(), None).expect("first sync");
    assert_eq!(files_of(&first).len(), 10_000);
    assert_eq!(bucket.server.count(GET), 10_000);
    let lists = bucket.server.count(LIST);

    let second = sync(&source, &bucket.state_dir(), Some(&status_after(&first))).expect("poll");
    assert!(matches!(second, SyncOutcome::Unchanged { .. }));
    assert_eq!(bucket.server.count(GET), 10_000, "no download");
    // ListObjectsV2 pages hold 1,000 keys: one listing is ten pages.
    assert_eq!(bucket.server.count(LIST) - lists, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_keys_from_a_hostile_server_are_refused_by_name() {
    for key in ["../escape.yaml", "apps/../../escape.yaml", "apps//x.yaml"] {
        let server = crate::support::hostile_s3::HostileS3::start(vec![
            ("ok.yaml".to_string(), "ok\n".to_string()),
            (key.to_string(), "evil\n".to_string()),
        ]);
        let root = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[agent]\nstate_dir = {:?}\n[bucket.fleet]\nendpoint = \"127.0.0.1:{}\"\ninsecure = true\nbucket_name = \"fleet\"\n",
            root.path().join("state").display().to_string(),
            server.port
        );
        let config = Config::parse(Path::new("kedge.toml"), &text).expect("valid config");
        let source = config
            .source(&SourceRef::new(SourceKind::Bucket, "fleet"))
            .expect("source");
        let err = sync(source, &root.path().join("state"), None).expect_err("refused");
        let message = err.to_string();
        assert!(
            message.contains(key) && message.contains("refused"),
            "{key}: {message}"
        );
        assert_eq!(server.gets(), 0, "{key}: nothing downloaded");
        assert!(!root.path().join("escape.yaml").exists());
    }
}

/// `kedge run` with a bucket source: its manifests applied on the test
/// control plane, `kedge status` and `kedge reconcile source bucket/NAME`.
#[tokio::test(flavor = "multi_thread")]
async fn kedge_run_applies_a_buckets_manifests_to_the_cluster() {
    use crate::kustomization_run::configmap;
    use crate::support::{cluster, TestNamespace};
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "bucket-run").await;
    let bucket = Bucket::new();
    s3::put(&bucket.client, "edge/apps/a.yaml", &configmap("a", "one")).await;
    let config = bucket.root.path().join("kedge.toml");
    let socket = bucket.root.path().join("kedge.sock");
    let text = format!(
        "[agent]\nstate_dir = {:?}\nkubeconfig = {:?}\nsocket = {:?}\n\n{}\n[kustomization.bucket-run]\nsource = \"bucket/fleet\"\npath = \"./apps\"\ninterval = \"1m\"\nretry_interval = \"1s\"\nprune = true\ntarget_namespace = \"{}\"\n",
        bucket.state_dir().display().to_string(),
        cluster().kubeconfig.display().to_string(),
        socket.display().to_string(),
        bucket.table("prefix = \"edge/\"\ninterval = \"1h\""),
        ns.name,
    );
    std::fs::write(&config, text).expect("config");
    let log_path = bucket.root.path().join("kedge.log");
    let _daemon = crate::kustomization_run::run_daemon(&config, &log_path);
    configmap_becomes(&client, &ns.name, "one", &log_path).await;

    // The interval is an hour: only `kedge reconcile source` brings the change.
    s3::put(&bucket.client, "edge/apps/a.yaml", &configmap("a", "two")).await;
    reconcile_source(&config, "bucket/fleet");
    configmap_becomes(&client, &ns.name, "two", &log_path).await;

    let status = kedge_cli(&config, &["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("bucket/fleet") && shown.contains("sha256:"),
        "{shown}"
    );
    let cli = |args: &[&str]| kedge_cli(&config, args);
    let out = cli(&["suspend", "bucket/fleet"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bucket/fleet suspended"
    );
    let out = cli(&["reconcile", "source", "bucket/fleet"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bucket/fleet is suspended"),
        "{out:?}"
    );
    let out = cli(&["resume", "bucket/fleet"]);
    assert!(out.status.success(), "{out:?}");

    let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !logged.contains(s3::SECRET_ACCESS_KEY),
        "the secret is never logged"
    );
}

/// Waits until ConfigMap `a` holds `value`; panics with the daemon's log.
pub(crate) async fn configmap_becomes(
    client: &kube::Client,
    namespace: &str,
    value: &str,
    log: &Path,
) {
    use crate::kustomization_run::value_of;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while value_of(client, namespace, "a").await.as_deref() != Some(value) {
        if std::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("configmap a = {value} not applied within 60s; log:\n{log}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
