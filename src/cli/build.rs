//! `kedge build PATH`: print what the kustomization at PATH builds to, as
//! `kubectl kustomize PATH` does.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// `flux`: a directory without kustomization file is built as Flux does.
pub fn run(path: &Path, flux: bool) -> anyhow::Result<ExitCode> {
    let resources = if flux {
        crate::kustomize::build_plain_dir(path)
    } else {
        crate::kustomize::build(path)
    }
    .with_context(|| format!("building {}", path.display()))?;
    let yaml = crate::kustomize::to_yaml(&resources);
    let mut out = std::io::stdout().lock();
    match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => other
            .map(|()| ExitCode::SUCCESS)
            .context("writing to stdout"),
    }
}
