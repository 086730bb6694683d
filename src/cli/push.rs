//! `kedge push artifact`: a directory as an OCI artifact in Flux's format,
//! from CI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::source::oci::{push_artifact, Push};

#[derive(Debug, Args)]
pub struct ArtifactArgs {
    /// `oci://HOST[:PORT]/REPOSITORY[:TAG]` (tag `latest` if none).
    url: String,
    /// The directory whose files become the artifact (`.git` left out).
    #[arg(long)]
    path: PathBuf,
    /// Where the files come from, e.g. the Git repository's URL.
    #[arg(long)]
    source: String,
    /// Their revision there, e.g. `main@sha1:<commit>`.
    #[arg(long)]
    revision: String,
    /// Basic auth user; the password is read from --password-file.
    #[arg(long, requires = "password_file")]
    username: Option<String>,
    #[arg(long, requires = "username")]
    password_file: Option<PathBuf>,
    /// A CA bundle (PEM) the registry's certificate chains to.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Plain HTTP (a registry on loopback or a trusted network).
    #[arg(long, conflicts_with_all = ["ca_file", "password_file"])]
    insecure: bool,
    /// How long each request may take.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub fn artifact(args: &ArtifactArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.path.is_dir(),
        "--path {}: not a directory",
        args.path.display()
    );
    let pushed = push_artifact(&Push {
        url: &args.url,
        dir: &args.path,
        source: &args.source,
        revision: &args.revision,
        username: args.username.as_deref(),
        password_file: args.password_file.as_deref(),
        ca_file: args.ca_file.as_deref(),
        insecure: args.insecure,
        timeout: args.timeout,
    })
    .with_context(|| format!("pushing {} to {}", args.path.display(), args.url))?;
    println!("{pushed}");
    Ok(ExitCode::SUCCESS)
}
