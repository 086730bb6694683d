//! `kedge bundle create` (on a connected machine) and `kedge bundle
//! import` (on a node): signed offline bundles, `source::bundle`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;

use super::control::{ask, print_reply, SLOW};
use super::DaemonArgs;
use crate::config::{Config, SourceRef, DEFAULT_CONFIG_PATH};
use crate::protocol::{ClientError, Request};
use crate::reconcile::bundle as reconcile_bundle;
use crate::source::bundle::{self, CreateOptions, Packed};
use crate::source::store::latest_artifact;
use crate::state::Store;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The config whose state directory holds the artifacts.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Sources to pack, as kind/name (default: every configured source
    /// that has an artifact).
    sources: Vec<String>,
    /// The OpenSSH private key to sign with (`ssh-keygen -t ed25519`);
    /// nodes trust its public key in `[agent] trusted_keys_dir`.
    #[arg(long)]
    sign_key: PathBuf,
    /// Where to write the bundle (an OCI image layout tarball).
    #[arg(short, long)]
    output: PathBuf,
    /// The bundle's sequence, higher than every earlier bundle's (default:
    /// its creation time in seconds since the epoch).
    #[arg(long)]
    sequence: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle file.
    file: PathBuf,
    /// Accept a source's artifact from a bundle older than the one imported last.
    #[arg(long)]
    allow_downgrade: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub fn create(args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let database = config.database_path();
    let store = Store::open_read_only(&database)
        .with_context(|| format!("reading the state of {}", args.config.display()))?;
    let mut packed = Vec::new();
    for source in selected_sources(&config, &args.sources)? {
        let artifact = latest_artifact(&store, source.kind.as_str(), &source.name)?;
        match artifact {
            Some(artifact) => packed.push(Packed { source, artifact }),
            None if args.sources.is_empty() => {
                eprintln!("kedge: {source} has no artifact yet; left out");
            }
            None => anyhow::bail!("{source} has no artifact yet in {}", database.display()),
        }
    }
    anyhow::ensure!(!packed.is_empty(), "no source has an artifact to pack");
    let created_at = created_at()?;
    let sequence = match args.sequence {
        Some(sequence) => sequence,
        None => created_at.duration_since(SystemTime::UNIX_EPOCH)?.as_secs(),
    };
    let options = CreateOptions {
        sign_key: &args.sign_key,
        sequence,
        created_at,
    };
    let contents = bundle::create(&packed, &options, &args.output)?;
    for artifact in &contents.artifacts {
        println!(
            "{} {} {}",
            artifact.source, artifact.revision, artifact.digest
        );
    }
    println!(
        "wrote {} (sequence {}, {} artifacts)",
        args.output.display(),
        contents.sequence,
        contents.artifacts.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The named sources, each configured, or every configured one.
fn selected_sources(config: &Config, named: &[String]) -> anyhow::Result<Vec<SourceRef>> {
    if named.is_empty() {
        return Ok(config.sources.keys().cloned().collect());
    }
    named
        .iter()
        .map(|written| {
            SourceRef::parse(written)
                .filter(|source| config.sources.contains_key(source))
                .with_context(|| format!("{written:?}: no such source (kind/name) in the config"))
        })
        .collect()
}

/// Now, or `SOURCE_DATE_EPOCH` (seconds) for a reproducible bundle.
fn created_at() -> anyhow::Result<SystemTime> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(seconds) => {
            let seconds: u64 = seconds
                .trim()
                .parse()
                .context("SOURCE_DATE_EPOCH is not a number of seconds")?;
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
        }
        Err(_) => Ok(SystemTime::now()),
    }
}

/// Through the daemon when it runs (it stays the only writer of its
/// state), else straight into the state directory.
pub fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let file = std::path::absolute(&args.file)
        .with_context(|| format!("resolving {}", args.file.display()))?;
    let request = Request::ImportBundle {
        file: file.clone(),
        allow_downgrade: args.allow_downgrade,
    };
    match ask(&args.daemon, &request, SLOW) {
        Err(ClientError::NotRunning { .. }) => {
            import_offline(&args.daemon.config, &file, args.allow_downgrade)
        }
        reply => print_reply(reply?),
    }
}

fn import_offline(config: &Path, file: &Path, allow_downgrade: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let store = Mutex::new(Store::open(&config.database_path())?);
    match reconcile_bundle::import(file, &config, &store, allow_downgrade) {
        Ok(report) => {
            println!(
                "{}; the sources publish it when kedge runs",
                report.summary(file)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("kedge: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
