//! Debian's `docker-registry` (the CNCF distribution registry) on a
//! 127.0.0.1 port: an OCI registry for Helm charts, plain HTTP or TLS with
//! the test CA, optionally with htpasswd (bcrypt, `htpasswd` of Debian's
//! apache2-utils) Basic auth, which the registry's clients reach through
//! the token dance. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::git::{free_port, wait_for_port, TestCa};

pub struct Registry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// `HOST:PORT`, as helm and oci:// URLs name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(login: Option<(&str, &str)>, tls: Option<&TestCa>) -> Registry {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("data").display()
    );
    if let Some(ca) = tls {
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            ca.cert_pem.display(),
            ca.key_pem.display()
        ));
    }
    if let Some((user, password)) = login {
        let htpasswd: PathBuf = dir.path().join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("run htpasswd (Debian package apache2-utils)");
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: kedge-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).expect("write registry config");
    let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run docker-registry (Debian package docker-registry)");
    wait_for_port(port, "docker-registry", &mut child);
    Registry { port, dir, child }
}
