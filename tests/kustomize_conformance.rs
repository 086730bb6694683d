//! Differential conformance of `kedge::kustomize` against `kubectl
//! kustomize` (kustomize v5.5.0): every fixture is built by kedge and
//! compared byte for byte with its stored `expected.yaml` and, when
//! `kubectl` is on PATH, with `kubectl kustomize` run now. Fixtures with
//! `expected-error.txt` must fail in kedge too (the meaning, not the
//! wording, is compared: both fail).
//!
//! Fixtures: `tests/fixtures/kustomize/` (kedge's own, all must pass) and
//! `tests/fixtures/kustomize-corpus/` (from kustomize's own tests; the
//! cases kedge does not match yet are listed in
//! `tests/fixtures/kustomize-corpus-known-failures.txt`, a list that may
//! only shrink: a listed case that passes fails the test).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("build-dir.txt").is_file())
        .collect();
    cases.sort();
    cases
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What a build gave: the YAML, or that it failed (with the message).
#[derive(Debug, PartialEq)]
enum Outcome {
    Yaml(String),
    Failed(String),
}

impl Outcome {
    fn same_meaning(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Yaml(a), Outcome::Yaml(b)) => a == b,
            (Outcome::Failed(_), Outcome::Failed(_)) => true,
            _ => false,
        }
    }
}

fn build_dir(case: &Path) -> PathBuf {
    let rel = std::fs::read_to_string(case.join("build-dir.txt")).expect("build-dir.txt");
    case.join("input").join(rel.trim())
}

fn kedge(case: &Path) -> Outcome {
    match kedge::kustomize::build(&build_dir(case)) {
        Ok(resources) => Outcome::Yaml(kedge::kustomize::to_yaml(&resources)),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn stored(case: &Path) -> Outcome {
    match std::fs::read_to_string(case.join("expected.yaml")) {
        Ok(yaml) => Outcome::Yaml(yaml),
        Err(_) => Outcome::Failed(
            std::fs::read_to_string(case.join("expected-error.txt")).unwrap_or_default(),
        ),
    }
}

fn kubectl(case: &Path) -> Outcome {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(build_dir(case))
        .output()
        .expect("run kubectl kustomize");
    if out.status.success() {
        Outcome::Yaml(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Outcome::Failed(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The first differing lines, with a little context.
fn diff(expected: &Outcome, actual: &Outcome) -> String {
    let (Outcome::Yaml(e), Outcome::Yaml(a)) = (expected, actual) else {
        return format!("    expected {expected:.300?}\n    got      {actual:.300?}");
    };
    let (el, al): (Vec<&str>, Vec<&str>) = (e.lines().collect(), a.lines().collect());
    let first = el
        .iter()
        .zip(&al)
        .position(|(x, y)| x != y)
        .unwrap_or(el.len().min(al.len()));
    let start = first.saturating_sub(2);
    let mut out = format!("    first difference at line {}:\n", first + 1);
    for line in el.iter().skip(start).take(5) {
        out.push_str(&format!("    - {line}\n"));
    }
    for line in al.iter().skip(start).take(5) {
        out.push_str(&format!("    + {line}\n"));
    }
    out
}

/// Checks every case of a fixture directory; returns the failing names.
fn check_all(dir: &Path, live: bool) -> (usize, Vec<String>) {
    let mut passed = 0;
    let mut failed = Vec::new();
    for case in cases(dir) {
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let actual = kedge(&case);
        let mut problems = Vec::new();
        let expected = stored(&case);
        if !expected.same_meaning(&actual) {
            problems.push(format!(
                "  differs from expected.yaml:\n{}",
                diff(&expected, &actual)
            ));
        }
        if live {
            let oracle = kubectl(&case);
            if !oracle.same_meaning(&actual) {
                problems.push(format!(
                    "  differs from kubectl kustomize:\n{}",
                    diff(&oracle, &actual)
                ));
            }
        }
        if problems.is_empty() {
            passed += 1;
        } else {
            report(&format!("FAIL {name}\n{}", problems.join("\n")));
            failed.push(name);
        }
    }
    (passed, failed)
}

/// Written straight to stderr so the summary shows even when the test
/// harness captures output.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn kedge_builds_its_own_fixtures_like_kubectl_kustomize() {
    let live = kubectl_available();
    let (passed, failed) = check_all(&fixtures_root().join("kustomize"), live);
    report(&format!(
        "kedge fixtures (live kubectl: {live}): {passed} passed, {} failed",
        failed.len()
    ));
    assert!(
        passed >= 80,
        "expected at least 80 fixtures, found {passed} passing"
    );
    assert!(failed.is_empty(), "failing fixtures: {failed:?}");
}

#[test]
fn kedge_builds_the_kustomize_corpus_like_kubectl_kustomize() {
    let live = kubectl_available();
    let (passed, failed) = check_all(&fixtures_root().join("kustomize-corpus"), live);
    report(&format!(
        "kustomize corpus (live kubectl: {live}): {passed} passed, {} failed",
        failed.len()
    ));
    let known: BTreeSet<String> =
        std::fs::read_to_string(fixtures_root().join("kustomize-corpus-known-failures.txt"))
            .expect("known failures list")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
    let failed: BTreeSet<String> = failed.into_iter().collect();
    let new_failures: Vec<&String> = failed.difference(&known).collect();
    let now_passing: Vec<&String> = known.difference(&failed).collect();
    assert!(
        new_failures.is_empty(),
        "corpus cases failing that are not known failures: {new_failures:?}"
    );
    assert!(
        now_passing.is_empty(),
        "known failures that now pass (remove them from the list): {now_passing:?}"
    );
}
