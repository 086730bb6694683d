//! A seam for the files `secretGenerator` reads: a build can be given a
//! reader that turns their bytes into what the Secret holds (SOPS
//! decryption, in memory), without this module knowing how.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

/// One file a `secretGenerator` reads.
pub enum SecretSource<'a> {
    /// From `files`: `key` names the entry (`key=path`, or the file name).
    File { key: &'a str, path: &'a Path },
    /// From `envs`.
    Env { path: &'a Path },
}

/// Turns a secret generator's file into the bytes it generates from.
pub trait SecretSources: Send + Sync {
    fn read(&self, source: SecretSource<'_>, bytes: Vec<u8>) -> Result<Vec<u8>, String>;
}

thread_local! {
    /// The reader of the build running on this thread (a build runs on one).
    static READER: RefCell<Option<Arc<dyn SecretSources>>> = const { RefCell::new(None) };
}

/// Runs `build` with `reader` reading every secret generator's files.
pub fn with_secret_sources<R>(reader: Arc<dyn SecretSources>, build: impl FnOnce() -> R) -> R {
    let previous = READER.with(|r| r.replace(Some(reader)));
    let result = build();
    READER.with(|r| *r.borrow_mut() = previous);
    result
}

/// `bytes` through the reader of this build, if it has one.
pub(super) fn read(source: SecretSource<'_>, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let reader = READER.with(|r| r.borrow().clone());
    match reader {
        Some(reader) => reader.read(source, bytes),
        None => Ok(bytes),
    }
}
