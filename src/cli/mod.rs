//! The `kedge` command line: one subcommand per user task. This is the
//! binary's edge, so errors are `anyhow` and printed with their causes.

mod build;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// GitOps agent for single-node and edge Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "kedge", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version and exit.
    Version,
    /// Build a kustomization (or a plain directory of manifests) and print
    /// it as `kubectl kustomize` does.
    Build {
        /// Directory holding a kustomization.yaml.
        path: PathBuf,
        /// Build like Flux: a directory without kustomization file gets one
        /// listing the manifests below it.
        #[arg(long)]
        flux: bool,
    },
}

/// Parses the command line, runs the subcommand and maps its outcome to an
/// exit code (0 ok, 1 failed, 2 usage).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("kedge: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("kedge {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { path, flux } => build::run(&path, flux),
    }
}
