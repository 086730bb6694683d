use std::process::Command;

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("--version")
        .output()
        .expect("run kedge");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kedge {}", env!("CARGO_PKG_VERSION"))
    );
}
