//! `kedge build`, Flux-style plain directories, and what build errors say.

use std::fs;
use std::path::Path;
use std::process::Command;

use kedge::kustomize;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

#[test]
fn kedge_build_prints_what_kubectl_kustomize_prints() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kustomize/prefix_suffix_name_references");
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("build")
        .arg(case.join("input"))
        .output()
        .expect("run kedge build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn kedge_build_fails_with_the_kustomization_file_in_the_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "kustomization.yaml",
        "resources:\n- missing.yaml\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("build")
        .arg(dir.path())
        .output()
        .expect("run kedge build");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kustomization.yaml")
            && stderr.contains("'resources'")
            && stderr.contains("missing.yaml"),
        "{stderr}"
    );
}

#[test]
fn a_plain_directory_builds_like_flux_generates_its_kustomization() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "b.yaml", &config_map("b"));
    write(root, "a/one.yml", &config_map("one"));
    write(root, "a/notes.txt", "not a manifest");
    write(root, ".hidden/secret.yaml", &config_map("hidden"));
    write(
        root,
        "app/kustomization.yaml",
        "namePrefix: app-\nresources:\n- cm.yaml\n",
    );
    write(root, "app/cm.yaml", &config_map("cm"));
    write(root, "app/ignored.yaml", &config_map("not-listed"));
    let built = kustomize::build_plain_dir(root).expect("build");
    let names: Vec<&str> = built.iter().map(|r| r.name()).collect();
    assert_eq!(names, vec!["app-cm", "b", "one"]);

    // The same resources listed by hand build the same with kubectl.
    write(
        root,
        "kustomization.yaml",
        "resources:\n- a/one.yml\n- app\n- b.yaml\n",
    );
    let explicit = kustomize::build(root).expect("explicit build");
    assert_eq!(kustomize::to_yaml(&built), kustomize::to_yaml(&explicit));
    if let Ok(out) = Command::new("kubectl").arg("kustomize").arg(root).output() {
        if out.status.success() {
            assert_eq!(
                kustomize::to_yaml(&built),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

#[test]
fn an_empty_plain_directory_builds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(kustomize::build_plain_dir(dir.path())
        .expect("build")
        .is_empty());
}

/// Issue 12, defect 12e: a plain directory has no kustomization.yaml, so a
/// duplicate is blamed on the file that declares the object again.
#[test]
fn a_duplicate_in_a_plain_directory_names_the_file_that_repeats_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n";
    write(dir.path(), "a.yaml", cm);
    write(dir.path(), "b.yaml", cm);
    let err = kustomize::build_plain_dir(dir.path())
        .expect_err("a duplicate is refused")
        .to_string();
    assert!(!err.contains("kustomization.yaml"), "{err}");
    assert!(
        err.contains(&dir.path().join("b.yaml").display().to_string()),
        "{err}"
    );
    assert!(err.contains("already registered id"), "{err}");
}

fn build_error(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    for (rel, text) in files {
        write(dir.path(), rel, text);
    }
    match kustomize::build(dir.path()) {
        Ok(_) => panic!("build of {files:?} succeeded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_kustomization_file_and_field() {
    let err = build_error(&[
        ("kustomization.yaml", "resources:\n- a\n"),
        ("a/kustomization.yaml", "resources:\n- ..\n"),
    ]);
    assert!(
        err.contains("cycle") && err.contains("'resources'"),
        "{err}"
    );

    let cm = config_map("same");
    let err = build_error(&[
        ("kustomization.yaml", "resources:\n- x.yaml\n- y.yaml\n"),
        ("x.yaml", &cm),
        ("y.yaml", &cm),
    ]);
    assert!(
        err.contains("already registered id") && err.contains("same"),
        "{err}"
    );

    let patch = "patches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: nope\n";
    let err = build_error(&[
        (
            "kustomization.yaml",
            &format!("resources:\n- x.yaml\n{patch}"),
        ),
        ("x.yaml", &cm),
    ]);
    assert!(err.contains("'patches'") && err.contains("nope"), "{err}");

    let err = build_error(&[
        ("kustomization.yaml", "resources:\n- x.yaml\n"),
        ("x.yaml", "a: 1\nb: [\nc: 2\n"),
    ]);
    assert!(err.contains("x.yaml") && err.contains("line"), "{err}");

    let err = build_error(&[(
        "kustomization.yaml",
        "resources:\n- https://example.com/x.yaml\n",
    )]);
    assert!(
        err.contains("'resources'") && err.contains("not supported"),
        "{err}"
    );

    for field in ["helmCharts", "validators"] {
        let err = build_error(&[("kustomization.yaml", &format!("{field}:\n- x\n"))]);
        assert!(
            err.contains(&format!("'{field}'")) && err.contains("not supported"),
            "{err}"
        );
    }
    let exec_plugin =
        "apiVersion: someteam.example.com/v1\nkind: ChartInflator\nmetadata:\n  name: x\n";
    for field in ["generators", "transformers"] {
        let err = build_error(&[
            ("kustomization.yaml", &format!("{field}:\n- plugin.yaml\n")),
            ("plugin.yaml", exec_plugin),
        ]);
        assert!(
            err.contains(&format!("'{field}'")) && err.contains("not supported"),
            "{err}"
        );
    }
}

#[test]
fn patches_cannot_nest_objects_without_bound() {
    let mut ops = String::new();
    let mut path = String::from("/data");
    for _ in 0..600 {
        path.push_str("/x");
        ops.push_str(&format!("- op: add\n  path: {path}\n  value: {{}}\n"));
    }
    let err = build_error(&[
        (
            "kustomization.yaml",
            "resources:\n- cm.yaml\npatches:\n- path: ops.yaml\n  target:\n    kind: ConfigMap\n",
        ),
        (
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {}\n",
        ),
        ("ops.yaml", &ops),
    ]);
    assert!(err.contains("deeper than"), "{err}");
}
