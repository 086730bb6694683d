//! `kedge run --config PATH`: the daemon.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::daemon;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    daemon::init_logging();
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(daemon::run(config_path, config))?;
    Ok(ExitCode::SUCCESS)
}
