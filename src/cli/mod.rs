//! The `kedge` command line: one subcommand per user task. This is the
//! binary's edge, so errors are `anyhow` and printed with their causes.

mod build;
mod check_config;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

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
    /// Print the man page (roff) on stdout; the Debian package ships it.
    #[command(hide = true)]
    Man,
    /// Build a kustomization (or a plain directory of manifests) and print
    /// it as `kubectl kustomize` does.
    Build {
        /// Directory holding kustomization.yaml, or plain manifests.
        path: PathBuf,
    },
    /// Run the daemon: fetch every source on its interval until SIGTERM.
    Run {
        /// The config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Show each source and kustomization: revision, readiness, age and
    /// message, from the state database (the daemon need not run). Exits 1
    /// when one is not ready.
    Status(StatusArgs),
    /// Validate a config file and print every problem as file:line:col.
    CheckConfig {
        /// The config file.
        #[arg(default_value = DEFAULT_CONFIG_PATH)]
        path: PathBuf,
    },
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct StatusArgs {
    /// Read the state directory named by this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Read this state directory.
    #[arg(long)]
    state_dir: Option<PathBuf>,
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
        Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            page.render(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { path } => build::run(&path),
        Command::Run { config } => run::run(&config),
        Command::Status(args) => status::status(match (args.config, args.state_dir) {
            (Some(config), _) => status::StateLocation::Config(config),
            (None, Some(dir)) => status::StateLocation::StateDir(dir),
            (None, None) => status::default_location(),
        }),
        Command::CheckConfig { path } => check_config::check_config(&path),
    }
}
