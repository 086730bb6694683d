//! Validation of a kustomization's post-build keys: `substitute`,
//! `substitute_from`, `strict` and `decryption`.

use std::collections::BTreeMap;

use toml::Spanned;

use super::postbuild::{Decryption, PostBuild, SubstituteFrom, VarsKind};
use super::raw::{RawDecryption, RawKustomization, RawSubstituteFrom};
use super::validate::Checker;

/// Flux's rule for variable names (`^[_[:alpha:]][_[:alpha:][:digit:]]*$`).
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Checker<'_> {
    /// `None` on a problem.
    pub(super) fn post_build(&mut self, raw: &RawKustomization, key: &str) -> Option<PostBuild> {
        let before = self.problems.len();
        let substitute = self.substitute(&raw.substitute, key);
        let substitute_from = raw
            .substitute_from
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(index, entry)| {
                self.substitute_from(entry, &format!("{key}.substitute_from[{index}]"))
            })
            .collect();
        let decryption = raw
            .decryption
            .as_ref()
            .and_then(|d| self.decryption(d, &format!("{key}.decryption")));
        (self.problems.len() == before).then(|| PostBuild {
            substitute,
            substitute_from,
            strict: raw.strict.as_ref().is_some_and(|s| *s.get_ref()),
            decryption,
        })
    }

    fn substitute(
        &mut self,
        raw: &Option<Spanned<BTreeMap<String, String>>>,
        key: &str,
    ) -> BTreeMap<String, String> {
        let Some(vars) = raw else {
            return BTreeMap::new();
        };
        for name in vars.get_ref().keys() {
            if !is_variable_name(name) {
                self.problem(
                    vars.span(),
                    &format!("{key}.substitute"),
                    format!("variable name {name:?} is invalid: it must match ^[_[:alpha:]][_[:alpha:][:digit:]]*$"),
                );
            }
        }
        // Like Flux, a value is one line: newlines are dropped.
        vars.get_ref()
            .iter()
            .map(|(name, value)| (name.clone(), value.replace('\n', "")))
            .collect()
    }

    fn substitute_from(
        &mut self,
        entry: &Spanned<RawSubstituteFrom>,
        key: &str,
    ) -> Option<SubstituteFrom> {
        let raw = entry.get_ref();
        let optional = raw.optional.unwrap_or(false);
        if let Some(file) = &raw.file {
            for (value, field) in [
                (&raw.kind, "kind"),
                (&raw.name, "name"),
                (&raw.namespace, "namespace"),
            ] {
                if let Some(value) = value {
                    self.problem(
                        value.span(),
                        &format!("{key}.{field}"),
                        format!(
                            "{field} is not used with file: an entry reads a file or an object"
                        ),
                    );
                }
            }
            let path = self.absolute_path(file, &format!("{key}.file"), !optional)?;
            return Some(SubstituteFrom::File { path, optional });
        }
        let kind = match raw.kind.as_ref().map(|k| k.get_ref().as_str()) {
            Some("ConfigMap") => VarsKind::ConfigMap,
            Some("Secret") => VarsKind::Secret,
            Some(other) => {
                let span = raw.kind.as_ref().map_or(entry.span(), Spanned::span);
                self.problem(
                    span,
                    &format!("{key}.kind"),
                    format!("unknown kind {other:?}: use \"ConfigMap\" or \"Secret\""),
                );
                return None;
            }
            None => {
                self.problem(
                    entry.span(),
                    key,
                    "give either file, or kind (\"ConfigMap\" or \"Secret\"), name and namespace",
                );
                return None;
            }
        };
        let (Some(name), Some(namespace)) = (&raw.name, &raw.namespace) else {
            self.problem(
                entry.span(),
                key,
                format!("a {} entry needs name and namespace", kind.as_str()),
            );
            return None;
        };
        Some(SubstituteFrom::Object {
            kind,
            namespace: namespace.get_ref().clone(),
            name: name.get_ref().clone(),
            optional,
        })
    }

    fn decryption(&mut self, raw: &Spanned<RawDecryption>, key: &str) -> Option<Decryption> {
        let value = raw.get_ref();
        if value.provider.get_ref() != "sops" {
            self.problem(
                value.provider.span(),
                &format!("{key}.provider"),
                format!(
                    "unknown decryption provider {:?}: kedge supports \"sops\"",
                    value.provider.get_ref()
                ),
            );
            return None;
        }
        if value.age_key_file.is_none() && value.pgp_keyring_file.is_none() {
            self.problem(
                raw.span(),
                key,
                "decryption needs age_key_file or pgp_keyring_file (the keys that decrypt the files)",
            );
            return None;
        }
        let before = self.problems.len();
        let mut file = |value: &Option<Spanned<String>>, field: &str| {
            value
                .as_ref()
                .and_then(|v| self.absolute_path(v, &format!("{key}.{field}"), true))
        };
        let decryption = Decryption {
            age_key_file: file(&value.age_key_file, "age_key_file"),
            pgp_keyring_file: file(&value.pgp_keyring_file, "pgp_keyring_file"),
        };
        (self.problems.len() == before).then_some(decryption)
    }
}

#[cfg(test)]
mod tests {
    use super::is_variable_name;

    #[test]
    fn variable_names_follow_flux() {
        for good in ["a", "_", "cluster_name", "REGION", "a1", "_9"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "a.b", "ä", "a b"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}
