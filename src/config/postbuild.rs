//! What runs on a kustomization's objects after the build and before the
//! apply (Flux's `postBuild` and `decryption`): variable substitution and
//! SOPS decryption. A config value only; `crate::postbuild` does the work.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The post-build settings of one kustomization; the default does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostBuild {
    /// `substitute`: variables written in the config, applied last.
    pub substitute: BTreeMap<String, String>,
    /// `substitute_from`: where more variables come from, later entries
    /// overriding earlier ones.
    pub substitute_from: Vec<SubstituteFrom>,
    /// `strict`: a variable used without a value and without a default is
    /// an error rather than the empty string.
    pub strict: bool,
    /// `decryption`: how SOPS-encrypted objects and generator files are
    /// decrypted; `None`: they are applied as written.
    pub decryption: Option<Decryption>,
}

impl PostBuild {
    /// Whether variables are substituted at all (Flux substitutes only when
    /// some variable is defined, or, strict, to report undefined ones).
    pub fn substitutes(&self) -> bool {
        self.strict || !self.substitute.is_empty() || !self.substitute_from.is_empty()
    }
}

/// One `substitute_from` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubstituteFrom {
    /// The `data` of a ConfigMap or Secret in the cluster.
    Object {
        kind: VarsKind,
        namespace: String,
        name: String,
        /// A missing object is skipped rather than an error.
        optional: bool,
    },
    /// `KEY=value` lines of a file on the node.
    File { path: PathBuf, optional: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarsKind {
    ConfigMap,
    Secret,
}

impl VarsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VarsKind::ConfigMap => "ConfigMap",
            VarsKind::Secret => "Secret",
        }
    }
}

/// The `decryption` table: SOPS with local keys, at least one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decryption {
    /// age identities (`AGE-SECRET-KEY-1…` lines), read at every run.
    pub age_key_file: Option<PathBuf>,
    /// OpenPGP secret keys without a passphrase (`gpg
    /// --export-secret-keys`), read at every run.
    pub pgp_keyring_file: Option<PathBuf>,
}
