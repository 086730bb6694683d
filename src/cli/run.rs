//! `kedge run --config PATH`: the daemon.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::daemon;

/// How long blocking work may take to finish once the daemon has stopped.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    daemon::init_logging();
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(daemon::run(config_path, config));
    // A fetch stuck in a blocking read must not keep the process alive.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    result?;
    Ok(ExitCode::SUCCESS)
}
