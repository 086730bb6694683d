//! The files a `secretGenerator` reads, decrypted in memory when SOPS
//! encrypted them (Flux decrypts the same files, on disk, before its build).

use std::sync::Arc;

use super::sops::{self, Format, Keys};
use crate::kustomize::{SecretSource, SecretSources};

/// Decrypts generator sources with `keys`.
pub struct SecretFiles(pub Arc<Keys>);

impl SecretSources for SecretFiles {
    fn read(&self, source: SecretSource<'_>, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let format = match source {
            // The format comes from the key (`files: [key=path]`), as in Flux.
            SecretSource::File { key, .. } => Format::for_path(key),
            SecretSource::Env { path } => match Format::for_path(&path.to_string_lossy()) {
                Format::Binary => Format::Dotenv,
                format => format,
            },
        };
        sops::decrypt_file(bytes, format, &self.0).map_err(|e| format!("SOPS decryption: {e}"))
    }
}
