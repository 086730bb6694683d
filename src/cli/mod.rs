//! The `kedge` command line: one subcommand per user task. This is the
//! binary's edge, so errors are `anyhow` and printed with their causes.

mod bootstrap;
mod build;
mod bundle;
mod check_config;
mod control;
mod metrics;
mod push;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Build a directory (kustomization.yaml or plain manifests) as
    /// `kubectl kustomize` does, a configured kustomization by name (at its
    /// source's current artifact), or a Helm release (helm_release/NAME:
    /// its rendered manifests and hooks), through the daemon.
    Build {
        /// A directory, a kustomization's name, or helm_release/NAME.
        target: PathBuf,
        /// Build like Flux: a directory without kustomization file gets one
        /// listing the manifests below it.
        #[arg(long)]
        flux: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Run the daemon: sources and kustomizations until SIGTERM; SIGHUP or
    /// a change of the config file reloads it.
    Run {
        /// The config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Show each source and kustomization: revision, suspension, readiness,
    /// age and message, from the daemon (or the state database when it is
    /// stopped). Exits 1 when one is not ready or the config was refused.
    Status(StatusArgs),
    /// Validate a config file and print every problem as file:line:col.
    CheckConfig {
        /// The config file.
        #[arg(default_value = DEFAULT_CONFIG_PATH)]
        path: PathBuf,
    },
    /// Reconcile a source or a kustomization now and wait for the outcome.
    Reconcile {
        #[command(subcommand)]
        target: ReconcileTarget,
    },
    /// Stop reconciling a kustomization (NAME), a Helm release
    /// (helm_release/NAME) or a source (git/NAME) until resumed; lasts
    /// across restarts.
    Suspend {
        object: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Resume a suspended kustomization (NAME), Helm release
    /// (helm_release/NAME) or source (git/NAME).
    Resume {
        object: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Show the newest events, of one object (NAME, git/NAME) or of all.
    Events {
        object: Option<String>,
        /// How many events to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Show what applying a kustomization (NAME) or upgrading a Helm
    /// release (helm_release/NAME) now would change (server-side dry-run).
    /// Exits 1 when something would change.
    Diff {
        name: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Print the Prometheus metrics of `/metrics` once (for node_exporter's
    /// textfile collector); from the state database alone, without the
    /// counters, when the daemon is stopped.
    Metrics {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Push to a registry.
    Push {
        #[command(subcommand)]
        target: PushTarget,
    },
    /// Connect this node to its fleet repository: from then on its kedge
    /// configuration comes from Git.
    Bootstrap {
        #[command(subcommand)]
        target: BootstrapTarget,
    },
    /// Signed offline bundles for air-gapped nodes.
    Bundle {
        #[command(subcommand)]
        action: BundleAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum BootstrapTarget {
    /// Write the node's directory to a Git repository (one commit, unless
    /// it is there), point /etc/kedge/kedge.toml at it (`[agent]
    /// config_from`), start or reload kedge and wait until it is Ready.
    Git(bootstrap::GitArgs),
}

#[derive(Debug, Subcommand)]
pub enum BundleAction {
    /// Pack the current artifacts of sources into one signed file (an OCI
    /// image layout tarball), on a machine that fetched them.
    Create(bundle::CreateArgs),
    /// Verify a bundle against the trusted keys and import its artifacts
    /// (through the daemon when it runs).
    Import(bundle::ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum PushTarget {
    /// Push the files of a directory as an OCI artifact in Flux's format
    /// (what an `[oci.NAME]` source pulls); the same tree gives the same
    /// digest. Prints `oci://…:TAG@sha256:…`.
    Artifact(push::ArtifactArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReconcileTarget {
    /// Fetch a source (git/NAME) now.
    Source {
        name: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Reconcile a kustomization now.
    Kustomization {
        name: String,
        /// Fetch its source first.
        #[arg(long)]
        with_source: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Reconcile a Helm release now.
    #[command(alias = "helm_release", alias = "hr")]
    Helmrelease {
        name: String,
        /// Fetch its chart first.
        #[arg(long)]
        with_source: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// How to reach the daemon: its control socket, given or read from the
/// config file.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// The config file naming the control socket (`[agent] socket`).
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// The control socket, overriding the config.
    #[arg(long)]
    socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    location: StatusLocation,
    /// The control socket (default: from the config file).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print again every 2 seconds until interrupted.
    #[arg(long)]
    watch: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct StatusLocation {
    /// Ask the daemon of this config file, or read its state directory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Read this state directory (the daemon is not asked).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Parses the command line, runs the subcommand and maps its outcome to an
/// exit code (0 ok, 1 failed, 2 usage).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Each cause once: many errors already show their source.
            eprintln!("kedge: {}", crate::error_chain::describe(err.as_ref()));
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
        Command::Build {
            target,
            flux,
            daemon,
        } => {
            if target.is_dir() {
                build::run(&target, flux)
            } else {
                control::build(&daemon, &target.to_string_lossy())
            }
        }
        Command::Run { config } => run::run(&config),
        Command::Status(args) => status::status(args),
        Command::CheckConfig { path } => check_config::check_config(&path),
        Command::Reconcile { target } => match target {
            ReconcileTarget::Source { name, daemon } => control::reconcile_source(&daemon, &name),
            ReconcileTarget::Kustomization {
                name,
                with_source,
                daemon,
            } => control::reconcile_kustomization(&daemon, &name, with_source),
            ReconcileTarget::Helmrelease {
                name,
                with_source,
                daemon,
            } => control::reconcile_helm_release(&daemon, &name, with_source),
        },
        Command::Suspend { object, daemon } => control::suspend(&daemon, &object, true),
        Command::Resume { object, daemon } => control::suspend(&daemon, &object, false),
        Command::Events {
            object,
            limit,
            daemon,
        } => control::events(&daemon, object, limit),
        Command::Diff { name, daemon } => control::diff(&daemon, &name),
        Command::Metrics { daemon } => metrics::metrics(&daemon),
        Command::Push {
            target: PushTarget::Artifact(args),
        } => push::artifact(&args),
        Command::Bootstrap {
            target: BootstrapTarget::Git(args),
        } => bootstrap::git(&args),
        Command::Bundle {
            action: BundleAction::Create(args),
        } => bundle::create(&args),
        Command::Bundle {
            action: BundleAction::Import(args),
        } => bundle::import(&args),
    }
}
