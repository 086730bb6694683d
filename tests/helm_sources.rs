//! Helm sources against real servers on 127.0.0.1: a chart repository
//! (tests/support/charts.rs) of charts packaged and indexed by the real
//! `helm` CLI, charts from Git (`git daemon`) and from a file; kedge's
//! artifacts read back by `helm`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kedge::config::{Config, Source, SourceRef};
use kedge::source::{self, Artifact, Limits, SyncOutcome};
use kedge::state::{SourceOutcome, SourceStatus, Store};

use crate::support::charts::{self, client_cert, tls_config, Options};
use crate::support::git::{base64, git_daemon, test_ca, FixtureRepo};
use crate::support::helm::{self, fixture, helm as run_helm};

/// Syncs the sources of one config into one state directory, recording
/// each outcome (and reading the upstream's artifact) like the scheduler.
struct Syncer {
    state_dir: tempfile::TempDir,
    store: Store,
    config: Config,
}

impl Syncer {
    fn new(toml: &str) -> Syncer {
        Syncer {
            state_dir: tempfile::tempdir().expect("tempdir"),
            store: Store::open_in_memory().expect("store"),
            config: parse(toml),
        }
    }

    fn reconfigure(&mut self, toml: &str) {
        self.config = parse(toml);
    }

    fn status(&self, source: &SourceRef) -> Option<SourceStatus> {
        self.store
            .source_status(source.kind.as_str(), &source.name)
            .expect("read status")
    }

    fn sync(&self, written: &str) -> Result<SyncOutcome, source::Error> {
        let source_ref = SourceRef::parse(written).expect("kind/name");
        let source: &Source = self.config.source(&source_ref).expect("configured");
        let previous = self.status(&source_ref);
        let upstream = source
            .upstream()
            .and_then(|u| self.status(&u))
            .and_then(|status| {
                source::store::latest_artifact(&self.store, &status.kind, &status.name)
                    .ok()
                    .flatten()
            });
        let result = source::sync(
            source,
            self.state_dir.path(),
            previous.as_ref(),
            upstream.as_ref(),
            None,
            Limits::default(),
            &AtomicBool::new(false),
        );
        let message = result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        let outcome = match &result {
            Ok(outcome) => SourceOutcome::Ready {
                revision: &outcome.artifact().revision,
                digest: &outcome.artifact().digest,
                path: &outcome.artifact().path,
                inputs: outcome.inputs(),
                new_artifact: matches!(outcome, SyncOutcome::NewArtifact { .. }),
            },
            Err(err) => SourceOutcome::Failed {
                reason: err.reason(),
                message: &message,
            },
        };
        self.store
            .record_source_outcome(
                source_ref.kind.as_str(),
                &source_ref.name,
                &source::display_url(source),
                0,
                outcome,
            )
            .expect("record outcome");
        result
    }

    fn new_artifact(&self, written: &str) -> Artifact {
        match self.sync(written) {
            Ok(SyncOutcome::NewArtifact { artifact, .. }) => artifact,
            other => panic!("{written}: expected a new artifact, got {other:?}"),
        }
    }

    fn unchanged(&self, written: &str) -> Artifact {
        match self.sync(written) {
            Ok(SyncOutcome::Unchanged { artifact, .. }) => artifact,
            other => panic!("{written}: expected no change, got {other:?}"),
        }
    }

    fn failure(&self, written: &str) -> String {
        match self.sync(written) {
            Err(err) => err.to_string(),
            Ok(outcome) => panic!("{written}: expected a failure, got {outcome:?}"),
        }
    }
}

fn parse(toml: &str) -> Config {
    match Config::parse(Path::new("test.toml"), toml) {
        Ok(config) => config,
        Err(err) => panic!("test config must be valid: {err}\n{toml}"),
    }
}

/// A chart repository directory: charts packaged by `helm package` at
/// the given versions, indexed by `helm repo index`.
struct Repo {
    home: tempfile::TempDir,
    dir: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("repo");
        std::fs::create_dir_all(&dir).expect("repo dir");
        Repo { home, dir }
    }

    fn add(&self, chart: &str, version: &str) -> PathBuf {
        helm::package(self.home.path(), &fixture(chart), &self.dir, Some(version))
    }

    fn remove(&self, chart: &str, version: &str) {
        std::fs::remove_file(self.dir.join(format!("{chart}-{version}.tgz")))
            .expect("remove chart");
    }

    fn index(&self) {
        helm::index(self.home.path(), &self.dir, None);
    }
}

fn repository_toml(url: &str, extra: &str, chart: &str, version: &str) -> String {
    format!(
        "[agent]\nstate_dir = \"/tmp/unused\"\n\
         [helm_repository.charts]\nurl = {url:?}\n{extra}\n\
         [helm_chart.app]\nchart = {{ repository = \"charts\", name = {chart:?}, version = {version:?} }}\n"
    )
}

/// What `helm show chart` says the package at `path` is.
fn helm_shows(home: &Path, path: &Path) -> String {
    run_helm(home, &["show", "chart", &path.to_string_lossy()])
}

#[test]
fn repository_polls_with_etag_and_the_chart_follows_new_and_withdrawn_versions() {
    let repo = Repo::new();
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        repo.add("plain", version);
    }
    repo.index();
    let server = charts::serve(&repo.dir, Options::default());
    let syncer = Syncer::new(&repository_toml(&server.url(), "", "plain", ">=1.0 <2"));

    let index = syncer.new_artifact("helm/charts");
    assert!(index.revision.starts_with("sha256:"), "{}", index.revision);
    let chart = syncer.new_artifact("chart/app");
    assert_eq!(chart.revision, "1.1.0", "the highest version in range");
    assert!(helm_shows(repo.home.path(), &chart.path).contains("version: 1.1.0"));

    server.clear_hits();
    assert_eq!(syncer.unchanged("helm/charts"), index);
    assert_eq!(syncer.unchanged("chart/app"), chart);
    let hits = server.hits();
    assert_eq!(
        hits.len(),
        1,
        "one conditional request, no chart download: {hits:?}"
    );
    assert_eq!(
        (hits[0].status, hits[0].conditional),
        (304, true),
        "{hits:?}"
    );

    // A newer version in range appears.
    repo.add("plain", "1.2.0");
    repo.index();
    syncer.new_artifact("helm/charts");
    assert_eq!(syncer.new_artifact("chart/app").revision, "1.2.0");

    // It is withdrawn: the highest remaining one serves.
    repo.remove("plain", "1.2.0");
    repo.index();
    syncer.new_artifact("helm/charts");
    let back = syncer.new_artifact("chart/app");
    assert_eq!(back.revision, "1.1.0");
    assert!(back.path.is_file());
}

#[test]
fn a_changed_index_of_other_charts_only_is_no_new_artifact() {
    let repo = Repo::new();
    repo.add("plain", "1.0.0");
    repo.index();
    let server = charts::serve(&repo.dir, Options::default());
    let syncer = Syncer::new(&repository_toml(&server.url(), "", "plain", "*"));
    let index = syncer.new_artifact("helm/charts");
    repo.add("hooks", "0.3.0");
    repo.index();
    assert_eq!(
        syncer.unchanged("helm/charts"),
        index,
        "only entries of plain are kept"
    );
    let kept = source::helm::read_index_artifact(&index).expect("read kept index");
    assert_eq!(kept.entries.keys().collect::<Vec<_>>(), ["plain"]);
}

#[test]
fn a_corrupt_index_and_a_digest_mismatch_keep_the_last_good_artifacts() {
    let repo = Repo::new();
    repo.add("plain", "1.0.0");
    repo.index();
    let server = charts::serve(&repo.dir, Options::default());
    let syncer = Syncer::new(&repository_toml(&server.url(), "", "plain", "*"));
    let index = syncer.new_artifact("helm/charts");
    let chart = syncer.new_artifact("chart/app");

    let good_index = std::fs::read(repo.dir.join("index.yaml")).expect("index");
    std::fs::write(
        repo.dir.join("index.yaml"),
        b"apiVersion: v1\nentries:\n  plain: [\n",
    )
    .expect("corrupt");
    let err = syncer.failure("helm/charts");
    assert!(err.contains("index.yaml line"), "{err}");
    assert_eq!(
        source::store::latest_artifact(&syncer.store, "helm", "charts")
            .ok()
            .flatten(),
        Some(index)
    );

    // A republished 1.1.0 whose bytes are not what the index says.
    std::fs::write(repo.dir.join("index.yaml"), good_index).expect("restore index");
    repo.add("plain", "1.1.0");
    repo.index();
    let tampered = repo.add("plain", "1.1.0");
    let mut bytes = std::fs::read(&tampered).expect("chart");
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&tampered, bytes).expect("tamper");
    syncer.new_artifact("helm/charts");
    let err = syncer.failure("chart/app");
    assert!(err.contains("the index says"), "{err}");
    let kept = source::store::latest_artifact(&syncer.store, "chart", "app")
        .ok()
        .flatten();
    assert_eq!(kept, Some(chart.clone()));
    assert!(chart.path.is_file(), "the last good chart stays on disk");
}

#[test]
fn an_unreachable_repository_keeps_serving_the_last_chart() {
    let repo = Repo::new();
    repo.add("plain", "1.0.0");
    repo.index();
    let server = charts::serve(&repo.dir, Options::default());
    let syncer = Syncer::new(&repository_toml(&server.url(), "", "plain", "*"));
    syncer.new_artifact("helm/charts");
    let chart = syncer.new_artifact("chart/app");
    drop(server);
    let err = syncer.failure("helm/charts");
    assert!(err.contains("127.0.0.1"), "{err}");
    assert_eq!(
        syncer.unchanged("chart/app"),
        chart,
        "the chart needs no network"
    );
}

#[test]
fn basic_and_bearer_credentials_go_to_the_repository_only() {
    let repo = Repo::new();
    repo.add("plain", "1.0.0");
    repo.index();
    let secrets = tempfile::tempdir().expect("tempdir");
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cret\n").expect("password");
    let token = secrets.path().join("token");
    std::fs::write(&token, "tok-123\n").expect("token");

    let basic = charts::serve(
        &repo.dir,
        Options {
            authorization: Some(format!("Basic {}", base64(b"kedge:s3cret"))),
            ..Options::default()
        },
    );
    // Plain http refuses credentials; TLS comes in the next test, so the
    // password goes over http here only through an explicit https-less
    // check: the config must refuse it.
    let refused = Config::parse(
        Path::new("test.toml"),
        &repository_toml(
            &basic.url(),
            &format!("username = \"kedge\"\npassword_file = {:?}", password),
            "plain",
            "*",
        ),
    );
    let err = refused
        .expect_err("credentials over http are refused")
        .to_string();
    assert!(
        err.contains("password_file is not used over plain HTTP"),
        "{err}"
    );

    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca(ca_dir.path());
    let tls = charts::serve(
        &repo.dir,
        Options {
            authorization: Some(format!("Basic {}", base64(b"kedge:s3cret"))),
            tls: Some(tls_config(&ca, false)),
        },
    );
    let ca_line = format!("ca_file = {:?}", ca.ca_pem);
    let syncer = Syncer::new(&repository_toml(
        &tls.url(),
        &format!("{ca_line}\nusername = \"kedge\"\npassword_file = {password:?}"),
        "plain",
        "*",
    ));
    syncer.new_artifact("helm/charts");
    assert_eq!(syncer.new_artifact("chart/app").revision, "1.0.0");
    let status = syncer
        .status(&SourceRef::parse("helm/charts").expect("ref"))
        .expect("status");
    assert!(
        !status.url.contains("s3cret")
            && status
                .artifact_inputs
                .as_deref()
                .is_some_and(|i| !i.contains("s3cret"))
    );

    std::fs::write(&password, "wrong\n").expect("password");
    let mut wrong = Syncer::new(&repository_toml(
        &tls.url(),
        &format!("{ca_line}\nusername = \"kedge\"\npassword_file = {password:?}"),
        "plain",
        "*",
    ));
    let err = wrong.failure("helm/charts");
    assert!(err.contains("401") && !err.contains("wrong"), "{err}");

    let bearer = charts::serve(
        &repo.dir,
        Options {
            authorization: Some("Bearer tok-123".to_string()),
            tls: Some(tls_config(&ca, false)),
        },
    );
    wrong.reconfigure(&repository_toml(
        &bearer.url(),
        &format!("{ca_line}\nbearer_token_file = {token:?}"),
        "plain",
        "*",
    ));
    wrong.new_artifact("helm/charts");
    assert_eq!(wrong.new_artifact("chart/app").revision, "1.0.0");
}

#[test]
fn chart_urls_on_another_host_get_credentials_only_with_pass_credentials() {
    let charts_home = Repo::new();
    charts_home.add("plain", "1.0.0");
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca(ca_dir.path());
    let secrets = tempfile::tempdir().expect("tempdir");
    let token = secrets.path().join("token");
    std::fs::write(&token, "tok-123").expect("token");
    let authorization = Some("Bearer tok-123".to_string());
    // The .tgz lives on another server (another port: another origin).
    let blobs = charts::serve(
        &charts_home.dir,
        Options {
            authorization: authorization.clone(),
            tls: Some(tls_config(&ca, false)),
        },
    );
    helm::index(
        charts_home.home.path(),
        &charts_home.dir,
        Some(&blobs.url()),
    );
    let index_server = charts::serve(
        &charts_home.dir,
        Options {
            authorization,
            tls: Some(tls_config(&ca, false)),
        },
    );
    let extra = format!("ca_file = {:?}\nbearer_token_file = {token:?}", ca.ca_pem);
    let syncer = Syncer::new(&repository_toml(&index_server.url(), &extra, "plain", "*"));
    syncer.new_artifact("helm/charts");
    let err = syncer.failure("chart/app");
    assert!(err.contains("401"), "no credentials to another host: {err}");
    let passing = Syncer::new(&repository_toml(
        &index_server.url(),
        &format!("{extra}\npass_credentials = true"),
        "plain",
        "*",
    ));
    passing.new_artifact("helm/charts");
    assert_eq!(passing.new_artifact("chart/app").revision, "1.0.0");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let repo = Repo::new();
    repo.add("crds", "0.1.0");
    repo.index();
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca(ca_dir.path());
    let client = client_cert(ca_dir.path());
    let server = charts::serve(
        &repo.dir,
        Options {
            authorization: None,
            tls: Some(tls_config(&ca, true)),
        },
    );
    let ca_line = format!("ca_file = {:?}", ca.ca_pem);
    let without = Syncer::new(&repository_toml(&server.url(), &ca_line, "crds", "*"));
    without.failure("helm/charts");
    let with = Syncer::new(&repository_toml(
        &server.url(),
        &format!(
            "{ca_line}\ncert_file = {:?}\nkey_file = {:?}",
            client.cert_pem, client.key_pem
        ),
        "crds",
        "*",
    ));
    with.new_artifact("helm/charts");
    let chart = with.new_artifact("chart/app");
    assert!(helm_shows(repo.home.path(), &chart.path).contains("name: crds"));
}

#[test]
fn every_kind_of_test_chart_comes_through_intact() {
    let repo = Repo::new();
    let dependent = repo.home.path().join("with-dependency");
    copy_dir(&fixture("with-dependency"), &dependent);
    copy_dir(&fixture("library"), &repo.home.path().join("library"));
    run_helm(
        repo.home.path(),
        &["dependency", "update", &dependent.to_string_lossy()],
    );
    helm::package(repo.home.path(), &dependent, &repo.dir, None);
    for chart in ["plain", "library", "crds", "hooks"] {
        repo.add(chart, "0.1.0");
    }
    repo.index();
    let server = charts::serve(&repo.dir, Options::default());
    let mut toml = format!("[helm_repository.charts]\nurl = {:?}\n", server.url());
    for chart in ["plain", "with-dependency", "library", "crds", "hooks"] {
        toml.push_str(&format!(
            "[helm_chart.{chart}]\nchart = {{ repository = \"charts\", name = \"{chart}\", version = \"0.1.x\" }}\n"
        ));
    }
    let syncer = Syncer::new(&toml);
    syncer.new_artifact("helm/charts");
    for chart in ["plain", "with-dependency", "library", "crds", "hooks"] {
        let artifact = syncer.new_artifact(&format!("chart/{chart}"));
        let original =
            std::fs::read(repo.dir.join(format!("{chart}-0.1.0.tgz"))).expect("packaged");
        assert_eq!(
            std::fs::read(&artifact.path).expect("artifact"),
            original,
            "{chart}: the package as published"
        );
        if chart != "library" {
            let rendered = run_helm(
                repo.home.path(),
                &[
                    "template",
                    "r",
                    &artifact.path.to_string_lossy(),
                    "--include-crds",
                ],
            );
            assert!(rendered.contains("kind:"), "{chart}: {rendered}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn git_chart_toml(url: &str) -> String {
    format!(
        "[git.fleet]\nurl = {url:?}\n\
         [helm_chart.web]\nchart = {{ source = \"git/fleet\", path = \"charts/plain\" }}\n"
    )
}

#[test]
fn a_chart_from_git_is_packaged_deterministically_and_its_revision_follows_its_files() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    let files: Vec<(String, String)> = [
        "Chart.yaml",
        "values.yaml",
        "templates/configmap.yaml",
        ".helmignore",
    ]
    .iter()
    .map(|f| {
        let content = std::fs::read_to_string(fixture("plain").join(f)).expect("fixture file");
        (format!("charts/plain/{f}"), content)
    })
    .collect();
    let mut all: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    all.push(("charts/plain/notes/ignored.txt", "left out by .helmignore"));
    all.push(("README.md", "not part of the chart"));
    repo.commit(&all, "chart");
    repo.push();
    let daemon = git_daemon(root.path());
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
    let syncer = Syncer::new(&git_chart_toml(&url));
    syncer.new_artifact("git/fleet");
    let first = syncer.new_artifact("chart/web");
    assert_eq!(first.revision, "0.1.0");
    let home = tempfile::tempdir().expect("tempdir");
    let shown = helm_shows(home.path(), &first.path);
    assert!(
        shown.contains("name: plain") && shown.contains("version: 0.1.0"),
        "{shown}"
    );
    let listing = tar_listing(&first.path);
    assert!(
        listing.contains(&"plain/templates/configmap.yaml".to_string()),
        "{listing:?}"
    );
    assert!(!listing.iter().any(|p| p.contains("notes/")), "{listing:?}");

    // Another commit that leaves the chart alone: no new chart.
    repo.commit(&[("README.md", "still not part of the chart")], "docs");
    repo.push();
    syncer.new_artifact("git/fleet");
    assert_eq!(syncer.unchanged("chart/web"), first);

    // Packaging is deterministic: another state directory, the same bytes.
    let again = Syncer::new(&git_chart_toml(&url));
    again.new_artifact("git/fleet");
    assert_eq!(again.new_artifact("chart/web").digest, first.digest);

    // The chart's files change, its version does not.
    let commit = repo.commit(
        &[("charts/plain/values.yaml", "greeting: hi\n")],
        "greeting",
    );
    repo.push();
    syncer.new_artifact("git/fleet");
    let changed = syncer.new_artifact("chart/web");
    assert_eq!(changed.revision, format!("0.1.0+{}", &commit[..12]));
    let rendered = run_helm(
        home.path(),
        &["template", "r", &changed.path.to_string_lossy()],
    );
    assert!(rendered.contains("greeting: \"hi\""), "{rendered}");

    // A version bump is the revision again.
    let bumped = std::fs::read_to_string(fixture("plain/Chart.yaml"))
        .expect("Chart.yaml")
        .replace("0.1.0", "0.2.0");
    repo.commit(&[("charts/plain/Chart.yaml", bumped.as_str())], "bump");
    repo.push();
    syncer.new_artifact("git/fleet");
    assert_eq!(syncer.new_artifact("chart/web").revision, "0.2.0");
}

#[test]
fn a_chart_from_git_with_an_unvendored_dependency_is_refused_by_name() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    let chart = std::fs::read_to_string(fixture("with-dependency/Chart.yaml")).expect("Chart.yaml");
    repo.commit(&[("charts/plain/Chart.yaml", chart.as_str())], "chart");
    repo.push();
    let daemon = git_daemon(root.path());
    let syncer = Syncer::new(&git_chart_toml(&format!(
        "git://127.0.0.1:{}/fleet.git",
        daemon.port
    )));
    syncer.new_artifact("git/fleet");
    let err = syncer.failure("chart/web");
    assert!(
        err.contains("dependency library") && err.contains("charts/"),
        "{err}"
    );
}

#[test]
fn a_chart_file_on_the_node_is_its_own_artifact() {
    let repo = Repo::new();
    let packaged = repo.add("hooks", "0.4.0");
    let toml = format!("[helm_chart.local]\nchart = {{ file = {:?} }}\n", packaged);
    let syncer = Syncer::new(&toml);
    let first = syncer.new_artifact("chart/local");
    assert_eq!(first.revision, "0.4.0");
    assert_eq!(
        std::fs::read(&first.path).expect("artifact"),
        std::fs::read(&packaged).expect("chart")
    );
    assert_eq!(syncer.unchanged("chart/local"), first);
    std::fs::write(&packaged, b"not a chart").expect("overwrite");
    let err = syncer.failure("chart/local");
    assert!(err.contains("not a chart package"), "{err}");
    assert!(first.path.is_file());
}

fn tar_listing(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("open");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn helm_sources_are_configured_and_refused_with_their_position() {
    for (toml, expected) in [
        ("[helm_repository.a]\nurl = \"ftp://x\"\n", "helm_repository.a.url"),
        ("[helm_repository.a]\nurl = \"https://u:p@x/\"\n", "must not hold credentials"),
        ("[helm_repository.a]\nurl = \"https://x/\"\ncert_file = \"/etc/hostname\"\n", "cert_file needs key_file"),
        ("[helm_repository.a]\nurl = \"https://x/\"\ninsecure = true\n", "insecure is for oci://"),
        ("[helm_chart.a]\nchart = { repository = \"nope\", name = \"x\" }\n", "no valid [helm_repository.nope]"),
        ("[helm_chart.a]\nchart = { file = \"/x.tgz\", source = \"git/a\" }\n", "give exactly one of"),
        ("[helm_repository.r]\nurl = \"https://x/\"\n[helm_chart.a]\nchart = { repository = \"r\", name = \"x\", version = \">=\" }\n", "bad version range"),
        ("[helm_repository.r]\nurl = \"https://x/\"\n[kustomization.k]\nsource = \"helm/r\"\ninterval = \"1m\"\nprune = true\n", "not a source of files"),
        ("[helm_repository.r]\nurl = \"https://x/\"\n[helm_chart.a]\nchart = { source = \"helm/r\" }\n", "not a source of files"),
        (
            "[helm_repository.r]\nurl = \"https://x/\"\n[helm_chart.a]\nchart = { repository = \"r\", name = \"x\", digest = \"sha256:00\" }\n",
            "digest is for charts of oci:// repositories",
        ),
        (
            "[helm_repository.r]\nurl = \"oci://x/c\"\n[helm_chart.a]\nchart = { repository = \"r\", name = \"x\", digest = \"sha256:00\" }\n",
            "64 hex digits",
        ),
    ] {
        let err = match Config::parse(Path::new("test.toml"), toml) {
            Ok(_) => panic!("{toml} must be refused"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(expected), "{toml}\n{err}");
    }
    let config = parse(
        "[helm_repository.bitnami]\nurl = \"https://charts.example.org/\"\n\
         [helm_chart.redis]\nchart = { repository = \"bitnami\", name = \"redis\", version = \">=18.0 <19\" }\n\
         [helm_chart.web]\nchart = { file = \"/var/lib/kedge/charts/web-1.2.0.tgz\" }\n",
    );
    let Some(Source::Helm(bitnami)) =
        config.source(&SourceRef::parse("helm/bitnami").expect("ref"))
    else {
        panic!("no helm/bitnami");
    };
    assert_eq!(bitnami.charts.iter().collect::<Vec<_>>(), ["redis"]);
    let redis = config
        .source(&SourceRef::parse("chart/redis").expect("ref"))
        .expect("chart/redis");
    assert_eq!(redis.upstream(), SourceRef::parse("helm/bitnami"));
}

fn revision_of(setup: &crate::daemon_common::Setup, kind: &str, name: &str) -> Option<String> {
    let out = setup.cli(&["status", "-o", "json"]);
    let report: kedge::protocol::StatusReport = serde_json::from_slice(&out.stdout).ok()?;
    report
        .sources
        .into_iter()
        .find(|row| row.kind == kind && row.name == name && row.ready)
        .and_then(|row| row.revision)
}

#[test]
fn kedge_run_fetches_charts_reconciles_on_request_and_serves_offline_after_a_restart() {
    use crate::daemon_common::{stderr, stdout, Setup};
    use std::time::Duration;
    let repo = Repo::new();
    repo.add("plain", "1.0.0");
    repo.index();
    let server = charts::serve(&repo.dir, Options::default());
    let setup = Setup::new(
        "",
        &format!(
            "[helm_repository.charts]\nurl = {:?}\ninterval = \"1h\"\n\
             [helm_chart.app]\nchart = {{ repository = \"charts\", name = \"plain\", version = \"1.x\" }}\ninterval = \"1h\"\n",
            server.url()
        ),
    );
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    let bound = Duration::from_secs(60);
    setup.wait_until("chart/app at 1.0.0", bound, || {
        revision_of(&setup, "chart", "app").as_deref() == Some("1.0.0")
    });

    // Intervals are 1h: only the request (and the chart following its
    // repository's new artifact) explains the upgrade.
    repo.add("plain", "1.1.0");
    repo.index();
    let out = setup.cli(&["reconcile", "source", "helm/charts"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("helm/charts: stored artifact for revision sha256:"),
        "{}",
        stdout(&out)
    );
    setup.wait_until("chart/app at 1.1.0", bound, || {
        revision_of(&setup, "chart", "app").as_deref() == Some("1.1.0")
    });
    let table = stdout(&setup.cli(&["status"]));
    assert!(
        table.contains("helm/charts") && table.contains("chart/app"),
        "{table}"
    );
    daemon.stop();

    // Offline, across a restart: the repository fails, the chart stays.
    drop(server);
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    let out = setup.cli(&["reconcile", "source", "helm/charts"]);
    assert!(!out.status.success(), "the repository is unreachable");
    assert_eq!(
        revision_of(&setup, "chart", "app").as_deref(),
        Some("1.1.0")
    );
    daemon.stop();
}

/// `helm push` of `package` to `oci://HOST/charts` (plain HTTP without a
/// CA); returns the manifest digest helm reports.
fn helm_push(
    home: &Path,
    package: &Path,
    host: &str,
    ca: Option<&Path>,
    login: Option<(&str, &str)>,
) -> String {
    let target = format!("oci://{host}/charts");
    let package = package.to_string_lossy().into_owned();
    let mut args = vec!["push".to_string(), package, target];
    match ca {
        Some(ca) => args.extend(["--ca-file".to_string(), ca.to_string_lossy().into_owned()]),
        None => args.push("--plain-http".to_string()),
    }
    if let Some((user, password)) = login {
        args.extend([
            "--username".to_string(),
            user.to_string(),
            "--password".to_string(),
            password.to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (stdout, stderr) = helm::helm_output(home, &args);
    format!("{stdout}{stderr}")
        .lines()
        .find_map(|line| line.strip_prefix("Digest: "))
        .map(|digest| digest.trim().to_string())
        .unwrap_or_else(|| panic!("helm push reported no digest: {stdout}{stderr}"))
}

#[test]
fn an_oci_registry_serves_charts_by_semver_tag_and_a_pushed_again_tag_is_pulled_again() {
    let repo = Repo::new();
    let registry = crate::support::registry::start(None, None);
    let mut pushed = Vec::new();
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        let package = repo.add("plain", version);
        let digest = helm_push(repo.home.path(), &package, &registry.host(), None, None);
        pushed.push((package, digest));
    }
    let url = format!("oci://{}/charts", registry.host());
    let syncer = Syncer::new(&repository_toml(
        &url,
        "insecure = true",
        "plain",
        "~1.0 || ~1.1",
    ));
    syncer.new_artifact("helm/charts");
    let chart = syncer.new_artifact("chart/app");
    assert_eq!(chart.revision, "1.1.0");
    // helm itself reads kedge's artifact.
    assert!(helm_shows(repo.home.path(), &chart.path).contains("version: 1.1.0"));
    assert_eq!(
        syncer.unchanged("helm/charts").revision,
        syncer
            .status(&SourceRef::parse("helm/charts").expect("ref"))
            .and_then(|s| s.revision)
            .expect("revision")
    );
    assert_eq!(syncer.unchanged("chart/app"), chart);

    // The same tag pushed again with other content: pulled again.
    let changed = repo.home.path().join("plain-changed");
    copy_dir(&fixture("plain"), &changed);
    std::fs::write(changed.join("values.yaml"), "greeting: again\n").expect("values");
    let out = repo.home.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let package = helm::package(repo.home.path(), &changed, &out, Some("1.1.0"));
    helm_push(repo.home.path(), &package, &registry.host(), None, None);
    let again = syncer.new_artifact("chart/app");
    assert_eq!(again.revision, "1.1.0");
    assert_ne!(again.digest, chart.digest);

    // Also by helm's own pull of what it pushed: the same bytes kedge stored.
    let pulled = repo.home.path().join("pulled");
    std::fs::create_dir_all(&pulled).expect("pulled dir");
    run_helm(
        repo.home.path(),
        &[
            "pull",
            &format!("{url}/plain"),
            "--version",
            "1.1.0",
            "--plain-http",
            "-d",
            &pulled.to_string_lossy(),
        ],
    );
    assert_eq!(
        std::fs::read(pulled.join("plain-1.1.0.tgz")).expect("pulled"),
        std::fs::read(&again.path).expect("artifact")
    );

    // Pinned by manifest digest instead of a version range.
    let (package, digest) = &pushed[0];
    let pinned = Syncer::new(&format!(
        "[helm_repository.charts]\nurl = {url:?}\ninsecure = true\n\
         [helm_chart.app]\nchart = {{ repository = \"charts\", name = \"plain\", digest = {digest:?} }}\n"
    ));
    let chart = pinned.new_artifact("chart/app");
    assert_eq!(chart.revision, "1.0.0");
    assert_eq!(
        std::fs::read(&chart.path).expect("artifact"),
        std::fs::read(package).expect("package")
    );
    assert_eq!(pinned.unchanged("chart/app"), chart);
}

#[test]
fn an_oci_registry_with_htpasswd_over_tls_needs_the_credentials() {
    let repo = Repo::new();
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca(ca_dir.path());
    let registry = crate::support::registry::start(Some(("kedge", "s3cret")), Some(&ca));
    let package = repo.add("hooks", "0.2.0");
    helm_push(
        repo.home.path(),
        &package,
        &registry.host(),
        Some(&ca.ca_pem),
        Some(("kedge", "s3cret")),
    );
    let url = format!("oci://{}/charts", registry.host());
    let secrets = tempfile::tempdir().expect("tempdir");
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cret\n").expect("password");
    let ca_line = format!("ca_file = {:?}", ca.ca_pem);

    let anonymous = Syncer::new(&repository_toml(&url, &ca_line, "hooks", "*"));
    let err = anonymous.failure("helm/charts");
    assert!(
        err.contains("listing the tags"),
        "{err}\nregistry log:\n{}",
        registry.log()
    );

    let syncer = Syncer::new(&repository_toml(
        &url,
        &format!("{ca_line}\nusername = \"kedge\"\npassword_file = {password:?}"),
        "hooks",
        "*",
    ));
    syncer.new_artifact("helm/charts");
    let chart = syncer.new_artifact("chart/app");
    assert_eq!(chart.revision, "0.2.0");
    assert_eq!(
        std::fs::read(&chart.path).expect("artifact"),
        std::fs::read(&package).expect("package")
    );
    let status = syncer
        .status(&SourceRef::parse("chart/app").expect("ref"))
        .expect("status");
    assert!(!format!("{status:?}").contains("s3cret"));
}

#[test]
fn damaged_helm_artifacts_are_reported_and_rebuilt_by_the_next_sync() {
    let repo = Repo::new();
    repo.add("plain", "1.0.0");
    repo.index();
    let server = charts::serve(&repo.dir, Options::default());
    let syncer = Syncer::new(&repository_toml(&server.url(), "", "plain", "*"));
    let index = syncer.new_artifact("helm/charts");
    let chart = syncer.new_artifact("chart/app");
    std::fs::write(&index.path, b"damaged").expect("damage the index artifact");
    std::fs::remove_file(&chart.path).expect("remove the chart artifact");
    for (written, artifact) in [("helm/charts", &index), ("chart/app", &chart)] {
        let source_ref = SourceRef::parse(written).expect("ref");
        let previous = syncer.status(&source_ref).expect("status");
        let source = syncer.config.source(&source_ref).expect("configured");
        let reported = source::restore(
            source,
            syncer.state_dir.path(),
            &previous,
            Limits::default(),
        );
        assert!(
            matches!(reported, Err(source::Error::ArtifactDamaged { .. })),
            "{written}: {reported:?}"
        );
        server.clear_hits();
        let rebuilt = syncer.new_artifact(written);
        assert_eq!(&rebuilt, artifact, "{written}: the same bytes again");
        assert!(
            server.hits().iter().all(|hit| !hit.conditional),
            "{written}: no conditional request for a damaged artifact: {:?}",
            server.hits()
        );
    }
}
