//! The config file: validation errors located at file:line:col with their
//! key, defaults, the kustomization graph, `config.example.toml`, and
//! `kedge check-config`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kedge::config::{Config, DeletionPolicy, Error, GitRef, GitVerify, Problem, VerifyMode};

fn problems(text: &str) -> Vec<Problem> {
    match Config::parse(Path::new("/etc/kedge/kedge.toml"), text) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(Error::Invalid(problems)) => problems.problems,
        Err(other) => panic!("expected Invalid, got {other}"),
    }
}

fn valid(text: &str) -> Config {
    match Config::parse(Path::new("/etc/kedge/kedge.toml"), text) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config: {err}"),
    }
}

fn one_problem(text: &str) -> Problem {
    let all = problems(text);
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().expect("one problem")
}

const SOURCE: &str = "[git.fleet]\nurl = \"https://git.example.org/ops/fleet.git\"\n";

#[test]
fn an_unknown_key_is_located_and_named() {
    let problem = one_problem("[git.fleet]\nurl = \"/srv/fleet.git\"\nbrnach = \"main\"\n");
    assert_eq!((problem.line, problem.column), (3, 1));
    assert_eq!(problem.key, "git.fleet.brnach");
    assert!(
        problem.message.contains("unknown field `brnach`"),
        "{problem:?}"
    );
}

#[test]
fn config_from_names_a_declared_source_of_files_and_a_path_inside_it() {
    let config = valid(&format!(
        "[agent]\nconfig_from = {{ source = \"git/fleet\", path = \"./clusters/edge-1/\" }}\n{SOURCE}"
    ));
    let from = config.agent.config_from.expect("config_from is read");
    assert_eq!(
        (from.source.to_string(), from.path.as_str()),
        ("git/fleet".into(), "clusters/edge-1")
    );

    let problem = one_problem("[agent]\nconfig_from = { source = \"git/other\", path = \"c\" }\n");
    assert_eq!((problem.line, problem.column), (2, 26));
    assert_eq!(problem.key, "agent.config_from.source");
    assert!(
        problem.message.contains("git/other is not declared"),
        "{problem:?}"
    );

    let all = problems(&format!(
        "[agent]\nconfig_from = {{ source = \"helm/charts\", path = \"../etc\" }}\n{SOURCE}"
    ));
    let keys: Vec<&str> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["agent.config_from.source", "agent.config_from.path"],
        "{all:?}"
    );
}

#[test]
fn a_bad_duration_points_at_its_value() {
    let problem = one_problem(&format!("{SOURCE}interval = \"5 parsecs\"\n"));
    assert_eq!((problem.line, problem.column), (3, 12));
    assert_eq!(problem.key, "git.fleet.interval");
    assert!(problem.message.contains("bad duration"), "{problem:?}");
}

#[test]
fn a_bad_url_and_a_relative_local_path_are_refused() {
    let problem = one_problem("[git.fleet]\nurl = \"ftp://example.org/x\"\n");
    assert_eq!((problem.line, problem.key.as_str()), (2, "git.fleet.url"));
    let problem = one_problem("[git.fleet]\nurl = \"relative/repo\"\n");
    assert!(problem.message.contains("absolute"), "{problem:?}");
}

#[test]
fn a_password_in_the_url_is_refused() {
    let problem = one_problem("[git.fleet]\nurl = \"https://bob:hunter2@example.org/x.git\"\n");
    assert!(problem.message.contains("password_file"), "{problem:?}");
}

#[test]
fn a_missing_key_file_is_named() {
    let known_hosts = tempfile::NamedTempFile::new().expect("temp known_hosts");
    let problem = one_problem(&format!(
        "[git.fleet]\nurl = \"ssh://git@example.org/x.git\"\nssh_key_file = \"/nonexistent/key\"\nknown_hosts_file = {:?}\n",
        known_hosts.path().display().to_string()
    ));
    assert_eq!(problem.key, "git.fleet.ssh_key_file");
    assert!(
        problem.message.contains("/nonexistent/key does not exist"),
        "{problem:?}"
    );
}

#[test]
fn an_ssh_url_needs_a_key_and_known_hosts() {
    let all = problems("[git.fleet]\nurl = \"git@example.org:ops/fleet.git\"\n");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|p| p.key == "git.fleet" && p.line == 1));
}

#[test]
fn verify_reads_its_mode_and_key_files_and_defaults_to_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signers = dir.path().join("allowed_signers");
    let keyring = dir.path().join("keyring.asc");
    std::fs::write(&signers, "x").expect("write");
    std::fs::write(&keyring, "x").expect("write");
    let config = valid(&format!(
        "{SOURCE}ref = {{ tag = \"v1\" }}\nverify = {{ mode = \"TagAndHEAD\", ssh_allowed_signers_file = {:?}, gpg_keyring_file = {:?} }}\n",
        signers.display().to_string(),
        keyring.display().to_string()
    ));
    let verify = config.git("fleet").and_then(|s| s.verify.clone());
    assert_eq!(
        verify,
        Some(GitVerify {
            mode: VerifyMode::TagAndHead,
            ssh_allowed_signers_file: Some(signers.clone()),
            gpg_keyring_file: Some(keyring),
        })
    );
    let config = valid(&format!(
        "{SOURCE}verify = {{ ssh_allowed_signers_file = {:?} }}\n",
        signers.display().to_string()
    ));
    let mode = config
        .git("fleet")
        .and_then(|s| s.verify.as_ref())
        .map(|v| v.mode);
    assert_eq!(mode, Some(VerifyMode::Head));
}

#[test]
fn verify_refuses_an_unknown_mode_a_tag_mode_on_a_branch_and_no_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signers = dir.path().join("allowed_signers");
    std::fs::write(&signers, "x").expect("write");
    let keys = format!(
        "ssh_allowed_signers_file = {:?}",
        signers.display().to_string()
    );
    let problem = one_problem(&format!("{SOURCE}verify = {{ mode = \"head\", {keys} }}\n"));
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (3, "git.fleet.verify.mode")
    );
    assert!(problem.message.contains("\"TagAndHEAD\""), "{problem:?}");
    let problem = one_problem(&format!("{SOURCE}verify = {{ mode = \"Tag\", {keys} }}\n"));
    assert_eq!(problem.key, "git.fleet.verify.mode");
    assert!(
        problem.message.contains("ref.tag or ref.semver"),
        "{problem:?}"
    );
    let problem = one_problem(&format!("{SOURCE}verify = {{ mode = \"HEAD\" }}\n"));
    assert_eq!(problem.key, "git.fleet.verify");
    assert!(problem.message.contains("gpg_keyring_file"), "{problem:?}");
    let problem = one_problem(&format!(
        "{SOURCE}verify = {{ gpg_keyring_file = \"keys/keyring.asc\" }}\n"
    ));
    assert_eq!(problem.key, "git.fleet.verify.gpg_keyring_file");
    let problem = one_problem(&format!(
        "{SOURCE}verify = {{ gpg_keyring_file = \"/nonexistent/keyring.asc\" }}\n"
    ));
    assert!(problem.message.contains("does not exist"), "{problem:?}");
}

#[test]
fn both_a_tag_and_a_branch_are_refused() {
    let problem = one_problem(&format!(
        "{SOURCE}ref = {{ branch = \"main\", tag = \"v1\" }}\n"
    ));
    assert_eq!((problem.line, problem.key.as_str()), (3, "git.fleet.ref"));
    assert!(problem.message.contains("exactly one"), "{problem:?}");
}

#[test]
fn every_problem_of_a_file_is_reported_at_once_in_file_order() {
    let all = problems(&format!(
        "{SOURCE}interval = \"soon\"\ntimeout = \"0s\"\nref = {{ semver = \"not a range\" }}\n"
    ));
    let lines: Vec<usize> = all.iter().map(|p| p.line).collect();
    assert_eq!(lines, [3, 4, 5], "{all:?}");
}

#[test]
fn git_defaults_follow_flux() {
    let config = valid(SOURCE);
    let Some(source) = config.git("fleet") else {
        panic!("no git/fleet in {config:?}")
    };
    assert_eq!(source.interval, Duration::from_secs(60));
    assert_eq!(source.timeout, Duration::from_secs(60));
    assert_eq!(source.reference, GitRef::Branch("main".into()));
    assert_eq!(config.agent.state_dir, PathBuf::from("/var/lib/kedge"));
}

#[test]
fn a_kustomization_is_parsed_with_flux_defaults() {
    let config = valid(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\npath = \"./clusters/edge-1/\"\ninterval = \"10m\"\nprune = true\n\
         health_checks = [{{ kind = \"Deployment\", name = \"web\", namespace = \"apps\" }}]\n"
    ));
    let apps = &config.kustomizations["apps"];
    assert_eq!(apps.path, PathBuf::from("clusters/edge-1"));
    assert_eq!(
        apps.retry_interval,
        Duration::from_secs(600),
        "retry_interval defaults to interval"
    );
    assert_eq!(
        apps.timeout,
        Duration::from_secs(300),
        "timeout defaults to interval, capped at 5m"
    );
    assert_eq!(apps.deletion_policy, DeletionPolicy::Delete);
    assert!(apps.prune && !apps.wait && !apps.force && !apps.suspend);
    assert_eq!(apps.health_checks[0].name, "web");
}

#[test]
fn an_unknown_deletion_policy_is_located_and_named() {
    let problem = one_problem(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\ndeletion_policy = \"keep\"\n"
    ));
    assert_eq!(
        (problem.line, problem.column, problem.key.as_str()),
        (7, 19, "kustomization.apps.deletion_policy")
    );
    assert!(
        problem.message.contains("unknown deletion policy \"keep\""),
        "{problem:?}"
    );
    let orphan = valid(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\ndeletion_policy = \"orphan\"\n"
    ));
    assert_eq!(
        orphan.kustomizations["apps"].deletion_policy,
        DeletionPolicy::Orphan
    );
}

/// `[kustomization.apps]` with `extra` after its required keys (line 7 on).
fn kustomization_with(extra: &str) -> String {
    format!("{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\n{extra}\n")
}

#[test]
fn drift_modes_and_ignore_rules_are_parsed_and_bad_ones_located() {
    use kedge::config::DriftMode;
    let config = valid(&kustomization_with(
        r#"drift = { mode = "detect", ignore = [{ paths = ["/spec/replicas"], target = { kind = "Deployment", name = "web-.*" } }] }"#,
    ));
    let drift = &config.kustomizations["apps"].drift;
    assert_eq!(drift.mode, DriftMode::Detect);
    assert_eq!(drift.ignore[0].paths, vec!["/spec/replicas"]);
    assert_eq!(drift.ignore[0].target.name.as_deref(), Some("web-.*"));
    assert_eq!(
        valid(&kustomization_with("")).kustomizations["apps"]
            .drift
            .mode,
        DriftMode::Correct,
        "correct by default"
    );

    let problem = one_problem(&kustomization_with(r#"drift = { mode = "revert" }"#));
    assert_eq!(problem.key, "kustomization.apps.drift.mode");
    assert_eq!(problem.line, 7);
    assert!(problem.message.contains("\"detect\""), "{problem:?}");
    let problem = one_problem(&kustomization_with(
        r#"drift = { ignore = [{ paths = ["spec/replicas"] }] }"#,
    ));
    assert_eq!(problem.key, "kustomization.apps.drift.ignore[0].paths");
    assert!(problem.message.contains("JSON pointer"), "{problem:?}");
    let problem = one_problem(&kustomization_with(
        r#"drift = { ignore = [{ paths = ["/x"], target = { name = "(" } }] }"#,
    ));
    assert_eq!(problem.key, "kustomization.apps.drift.ignore[0].target");
}

#[test]
fn flux_build_fields_are_parsed_and_bad_ones_located() {
    let config = valid(&kustomization_with(
        r#"name_prefix = "edge-"
name_suffix = "-v1"
patches = [{ patch = "- op: remove\n  path: /x\n", target = { kind = "Deployment", label_selector = "app=web" } }]
images = [{ name = "nginx", new_tag = "1.27" }]
components = ["../components/monitoring"]
common_metadata = { labels = { team = "edge" } }"#,
    ));
    let overlay = &config.kustomizations["apps"].overlay;
    assert_eq!(overlay.name_prefix.as_deref(), Some("edge-"));
    assert_eq!(
        overlay.patches[0]
            .target
            .as_ref()
            .and_then(|t| t.label_selector.as_deref()),
        Some("app=web")
    );
    assert_eq!(overlay.images[0].new_tag.as_deref(), Some("1.27"));
    assert_eq!(
        overlay.components[0].to_str(),
        Some("../components/monitoring")
    );
    assert_eq!(overlay.common_labels["team"], "edge");

    let problem = one_problem(&kustomization_with(r#"components = ["/etc/x"]"#));
    assert_eq!(problem.key, "kustomization.apps.components[0]");
    let problem = one_problem(&kustomization_with(r#"images = [{ new_tag = "1" }]"#));
    assert!(problem.message.contains("name"), "{problem:?}");
}

#[test]
fn a_target_namespace_that_is_not_a_namespace_name_is_refused() {
    for bad in ["", "Apps", "apps_1", "-apps", "apps.prod", &"a".repeat(64)] {
        let problem = one_problem(&format!(
            "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\ntarget_namespace = {bad:?}\n"
        ));
        assert_eq!(
            (problem.line, problem.column, problem.key.as_str()),
            (7, 20, "kustomization.apps.target_namespace"),
            "{bad:?}"
        );
        assert!(problem.message.contains("namespace"), "{problem:?}");
    }
    let good = valid(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\ntarget_namespace = \"edge-1\"\n"
    ));
    assert_eq!(
        good.kustomizations["apps"].target_namespace.as_deref(),
        Some("edge-1")
    );
}

#[test]
fn prune_must_be_explicit() {
    let problem = one_problem(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\n"
    ));
    assert!(problem.message.contains("prune"), "{problem:?}");
}

#[test]
fn a_kustomization_of_an_unknown_source_is_refused() {
    let problem = one_problem(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/flet\"\ninterval = \"5m\"\nprune = true\n"
    ));
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (4, "kustomization.apps.source")
    );
    assert!(
        problem.message.contains("no source [git.flet]"),
        "{problem:?}"
    );
}

#[test]
fn absolute_and_escaping_paths_are_refused() {
    for path in ["/clusters", "../other", "apps/../../x"] {
        let problem = one_problem(&format!(
            "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\npath = {path:?}\ninterval = \"5m\"\nprune = true\n"
        ));
        assert_eq!(
            (problem.line, problem.key.as_str()),
            (5, "kustomization.apps.path"),
            "{path}"
        );
    }
}

#[test]
fn a_depends_on_cycle_is_named() {
    let kustomization = |name: &str, depends: &str| {
        format!(
            "[kustomization.{name}]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\ndepends_on = [{depends:?}]\n"
        )
    };
    let text = format!(
        "{SOURCE}{}{}{}",
        kustomization("apps", "infra"),
        kustomization("infra", "crds"),
        kustomization("crds", "apps")
    );
    let problem = one_problem(&text);
    assert!(
        problem.message.contains("apps -> infra -> crds -> apps"),
        "{problem:?}"
    );
}

#[test]
fn a_depends_on_an_unknown_kustomization_is_refused() {
    let problem = one_problem(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\ndepends_on = [\"nope\"]\n"
    ));
    assert!(
        problem.message.contains("no kustomization \"nope\""),
        "{problem:?}"
    );
}

fn example_with_files_in(dir: &Path) -> PathBuf {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"))
            .expect("config.example.toml at the top level");
    let prefix = format!("{}/", dir.display());
    for line in example.lines() {
        if let Some(start) = line.find("\"/etc/kedge/") {
            let rest = &line[start + 1..];
            let end = rest.find('"').expect("closing quote");
            let file = dir.join(rest[..end].trim_start_matches("/etc/kedge/"));
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, "x").expect("write referenced file");
        }
    }
    let path = dir.join("kedge.toml");
    std::fs::write(&path, example.replace("/etc/kedge/", &prefix)).expect("write config");
    path
}

#[test]
fn the_example_config_is_valid_once_its_files_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::load(&example_with_files_in(dir.path())).expect("the example is valid");
    assert!(!config.sources.is_empty());
    assert!(!config.kustomizations.is_empty());
}

#[test]
fn check_config_prints_located_problems_and_exits_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kedge.toml");
    std::fs::write(
        &path,
        "[git.fleet]\nurl = \"/srv/fleet.git\"\ninterval = \"never\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(["check-config", path.to_str().expect("utf-8")])
        .output()
        .expect("run kedge");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:12: git.fleet.interval: bad duration",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = example_with_files_in(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(["check-config", path.to_str().expect("utf-8")])
        .output()
        .expect("run kedge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

#[test]
fn intervals_and_timeouts_under_a_second_are_refused() {
    let all = problems(&format!(
        "{SOURCE}interval = \"1ns\"\ntimeout = \"999ms\"\n\
         [kustomization.apps]\nsource = \"git/fleet\"\npath = \"./\"\nprune = true\n\
         interval = \"1ms\"\nretry_interval = \"10ms\"\ntimeout = \"500ms\"\n"
    ));
    let keys: Vec<&str> = all
        .iter()
        .filter(|p| p.message.contains("too short"))
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "git.fleet.interval",
            "git.fleet.timeout",
            "kustomization.apps.interval",
            "kustomization.apps.retry_interval",
            "kustomization.apps.timeout"
        ],
        "{all:?}"
    );
    assert!(
        all.iter()
            .filter(|p| p.message.contains("too short"))
            .all(|p| p.message.contains("at least 1s")),
        "{all:?}"
    );
    valid(&format!("{SOURCE}interval = \"1s\"\ntimeout = \"1s\"\n"));
}

#[test]
fn every_credential_over_plain_http_is_refused() {
    let token = tempfile::NamedTempFile::new().expect("temp token");
    let token = token.path().display().to_string();
    let problem = one_problem(&format!(
        "[git.fleet]\nurl = \"http://127.0.0.1:19080/p.git\"\nbearer_token_file = {token:?}\n"
    ));
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (3, "git.fleet.bearer_token_file")
    );
    assert!(problem.message.contains("clear text"), "{problem:?}");
    let problem = one_problem(&format!(
        "[git.fleet]\nurl = \"http://127.0.0.1:19080/p.git\"\nusername = \"kedge\"\npassword_file = {token:?}\n"
    ));
    assert_eq!(problem.key, "git.fleet.password_file");
    assert!(problem.message.contains("clear text"), "{problem:?}");
    valid(&format!(
        "[git.fleet]\nurl = \"https://127.0.0.1:19080/p.git\"\nbearer_token_file = {token:?}\n"
    ));
}

#[test]
fn user_info_in_an_http_url_is_refused_without_echoing_it() {
    for url in [
        "https://ghp_SECRETUSERTOKEN@git.example.org/x.git",
        "http://ghp_SECRETUSERTOKEN@127.0.0.1/x.git",
    ] {
        let problem = one_problem(&format!("[git.fleet]\nurl = {url:?}\n"));
        assert_eq!(problem.key, "git.fleet.url");
        assert!(problem.message.contains("bearer_token_file"), "{problem:?}");
        assert!(!problem.message.contains("SECRET"), "{problem:?}");
    }
    // The user of an ssh URL is the login name, not a secret.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let file = file.path().display().to_string();
    valid(&format!(
        "[git.fleet]\nurl = \"ssh://git@example.org/x.git\"\nssh_key_file = {file:?}\nknown_hosts_file = {file:?}\n"
    ));
}

#[test]
fn a_missing_field_is_named_under_its_own_table() {
    let problem = one_problem(&format!(
        "{SOURCE}\n[kustomization.extras]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\n\n\
         [kustomization.broken]\nsource = \"git/fleet\"\ninterval = \"5m\"\n"
    ));
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (9, "kustomization.broken"),
        "{problem:?}"
    );
    assert!(problem.message.contains("prune"), "{problem:?}");
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_its_key() {
    let problem = one_problem(&format!(
        "{SOURCE}[kustomization.cms]\nsource = \"git/fleet\"\ninterval = 60\nprune = true\n"
    ));
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (5, "kustomization.cms.interval"),
        "{problem:?}"
    );
}

#[test]
fn a_table_declared_twice_is_named_once() {
    let cms = "[kustomization.cms]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\n";
    let problem = one_problem(&format!("{SOURCE}{cms}{cms}"));
    assert_eq!(
        (problem.line, problem.key.as_str()),
        (7, "kustomization.cms"),
        "{problem:?}"
    );
    assert!(problem.message.contains("duplicate"), "{problem:?}");
}

#[test]
fn a_config_that_is_not_utf8_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kedge.toml");
    std::fs::write(&path, b"[git.fleet]\nurl = \"/srv/fl\xe9et\"\n").expect("write");
    let problem = match Config::load(&path) {
        Err(Error::Invalid(problems)) => problems.problems[0].clone(),
        other => panic!("expected a located problem, got {other:?}"),
    };
    assert_eq!((problem.line, problem.column), (2, 15), "{problem:?}");
    assert_eq!(problem.key, "git.fleet.url");
    assert!(problem.message.contains("UTF-8"), "{problem:?}");
}

#[test]
fn check_config_says_each_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    for path in [dir.path().join("missing.toml"), dir.path().to_path_buf()] {
        let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["check-config", path.to_str().expect("utf-8")])
            .output()
            .expect("run kedge");
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let cause = if path.is_dir() {
            "Is a directory"
        } else {
            "No such file or directory"
        };
        assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    }
}

const BUCKET: &str =
    "[bucket.manifests]\nendpoint = \"minio.local:9000\"\nbucket_name = \"fleet\"\n";

#[test]
fn a_bucket_source_defaults_to_https_and_a_kustomization_refers_to_it_by_kind() {
    use kedge::config::{BucketProvider, Source, SourceKind, SourceRef};
    let config = valid(&format!(
        "{BUCKET}prefix = \"clusters/edge-1/\"\n[kustomization.apps]\nsource = \"bucket/manifests\"\ninterval = \"5m\"\nprune = true\n"
    ));
    let source = SourceRef::new(SourceKind::Bucket, "manifests");
    let Some(Source::Bucket(bucket)) = config.source(&source) else {
        panic!("bucket/manifests configured: {config:?}")
    };
    assert_eq!(bucket.provider, BucketProvider::Generic);
    assert_eq!(bucket.endpoint.as_deref(), Some("https://minio.local:9000"));
    assert_eq!(bucket.interval, Duration::from_secs(300));
    assert_eq!(config.kustomizations["apps"].source, source);
}

#[test]
fn a_bucket_over_plain_http_needs_insecure_and_credentials_come_in_pairs() {
    let problem = one_problem(
        "[bucket.manifests]\nendpoint = \"http://minio.local:9000\"\nbucket_name = \"fleet\"\n",
    );
    assert_eq!(problem.key, "bucket.manifests.endpoint");
    assert!(problem.message.contains("insecure"), "{problem:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = dir.path().join("id");
    std::fs::write(&id, "x").expect("write");
    let problem = one_problem(&format!(
        "{BUCKET}access_key_id_file = {:?}\n",
        id.display().to_string()
    ));
    assert_eq!(problem.key, "bucket.manifests.access_key_id_file");
    assert!(
        problem.message.contains("needs secret_access_key_file"),
        "{problem:?}"
    );
}

#[test]
fn a_bucket_with_an_unknown_provider_or_a_climbing_prefix_is_refused() {
    let problem = one_problem(&format!("{BUCKET}provider = \"ftp\"\n"));
    assert_eq!(problem.key, "bucket.manifests.provider");
    let problem = one_problem(&format!("{BUCKET}prefix = \"a/../../b\"\n"));
    assert_eq!(problem.key, "bucket.manifests.prefix");
    let problem = one_problem(&format!("{BUCKET}max_objects = 0\n"));
    assert_eq!(problem.key, "bucket.manifests.max_objects");
}

#[test]
fn post_build_keys_are_parsed_in_flux_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("age.txt");
    std::fs::write(&key, "AGE-SECRET-KEY-1\n").expect("key file");
    let config = valid(&format!(
        "{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\n\
         substitute = {{ cluster_name = \"edge-1\", region = \"eu\\n\" }}\n\
         substitute_from = [{{ kind = \"ConfigMap\", name = \"vars\", namespace = \"kedge-system\", optional = true }}, {{ file = \"/etc/kedge/missing.env\", optional = true }}]\n\
         strict = true\n\
         decryption = {{ provider = \"sops\", age_key_file = {:?} }}\n",
        key.display().to_string()
    ));
    let post_build = &config.kustomizations["apps"].post_build;
    assert_eq!(
        post_build.substitute["region"], "eu",
        "newlines dropped, as Flux does"
    );
    assert_eq!(post_build.substitute_from.len(), 2);
    assert!(post_build.strict);
    assert_eq!(
        post_build
            .decryption
            .as_ref()
            .and_then(|d| d.age_key_file.clone()),
        Some(key)
    );
}

#[test]
fn bad_post_build_keys_are_located_and_named() {
    let kustomization = |extra: &str| {
        format!("{SOURCE}[kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\n{extra}\n")
    };
    let cases = [
        (
            "substitute = { \"cluster-name\" = \"x\" }",
            "kustomization.apps.substitute",
            "\"cluster-name\" is invalid",
        ),
        (
            "substitute_from = [{ kind = \"Deployment\", name = \"x\", namespace = \"y\" }]",
            "kustomization.apps.substitute_from[0].kind",
            "unknown kind",
        ),
        (
            "substitute_from = [{ kind = \"Secret\", name = \"x\" }]",
            "kustomization.apps.substitute_from[0]",
            "needs name and namespace",
        ),
        (
            "substitute_from = [{ file = \"/nonexistent/vars.env\" }]",
            "kustomization.apps.substitute_from[0].file",
            "does not exist",
        ),
        (
            "decryption = { provider = \"vault\" }",
            "kustomization.apps.decryption.provider",
            "kedge supports \"sops\"",
        ),
        (
            "decryption = { provider = \"sops\", pgp_keyring_file = \"/etc/kedge/pgp.asc\" }",
            "kustomization.apps.decryption.pgp_keyring_file",
            "does not exist",
        ),
        (
            "decryption = { provider = \"sops\" }",
            "kustomization.apps.decryption",
            "needs age_key_file",
        ),
    ];
    for (extra, key, message) in cases {
        let problem = one_problem(&kustomization(extra));
        assert_eq!(problem.key, key, "{extra}");
        assert_eq!(problem.line, 7, "{extra}");
        assert!(problem.message.contains(message), "{extra}: {problem:?}");
    }
}

#[test]
fn an_oci_source_refuses_a_tag_in_its_url_two_refs_and_secrets_over_plain_http() {
    let problem = one_problem("[oci.edge]\nurl = \"oci://registry.local:5000/fleet/edge:v1\"\n");
    assert_eq!(problem.key, "oci.edge.url");
    assert!(problem.message.contains("goes in ref"), "{problem:?}");

    let problem = one_problem(
        "[oci.edge]\nurl = \"oci://registry.local/fleet\"\nref = { tag = \"v1\", semver = \">=1\" }\n",
    );
    assert_eq!(problem.key, "oci.edge.ref");
    assert!(problem.message.contains("exactly one"), "{problem:?}");

    let secret = tempfile::NamedTempFile::new().expect("secret");
    let problem = one_problem(&format!(
        "[oci.edge]\nurl = \"oci://registry.local/fleet\"\ninsecure = true\nusername = \"kedge\"\npassword_file = {:?}\n",
        secret.path()
    ));
    assert_eq!(problem.key, "oci.edge.password_file");

    let problem = one_problem(
        "[oci.edge]\nurl = \"oci://registry.local/fleet\"\nlayer_selector = { operation = \"unpack\" }\n",
    );
    assert_eq!(problem.key, "oci.edge.layer_selector.operation");

    let config = valid("[oci.edge]\nurl = \"oci://registry.local/fleet\"\n\n[kustomization.apps]\nsource = \"oci/edge\"\ninterval = \"1m\"\nprune = true\n");
    let source = config
        .source(&kedge::config::SourceRef::parse("oci/edge").expect("ref"))
        .expect("oci/edge");
    assert_eq!(source.interval(), std::time::Duration::from_secs(300));
}
