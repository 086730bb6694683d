//! `kedge check-config [PATH]`: validate a config file and print every
//! problem, without touching state or the cluster.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, Error};

pub fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: ok ({} sources, {} kustomizations)",
                path.display(),
                config.sources.len(),
                config.kustomizations.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Invalid(problems)) => {
            eprintln!("{problems}");
            Ok(ExitCode::FAILURE)
        }
        Err(err) => Err(err.into()),
    }
}
