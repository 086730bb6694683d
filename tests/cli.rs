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

#[test]
fn a_state_directory_kedge_cannot_write_is_named_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // Root writes anywhere but in sysfs; anyone else not in a 0500 directory.
    let state_dir = if crate::support::running_as_root() {
        std::path::PathBuf::from("/sys")
    } else {
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).expect("mkdir state");
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o500))
            .expect("chmod state");
        state_dir
    };
    let config = dir.path().join("kedge.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\nsocket = {:?}\n",
            state_dir.display().to_string(),
            dir.path().join("kedge.sock").display().to_string()
        ),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run kedge");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("state directory {}", state_dir.display()))
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
}
