//! Validation of `[oci.NAME]` tables: the registry URL, the reference,
//! credentials, the layer selector and the cosign key.

use toml::Spanned;

use super::raw::{RawLayerSelector, RawOciRef, RawOciSource};
use super::validate::{Checker, DEFAULT_GIT_TIMEOUT};
use super::validate_helm::is_sha256_digest;
use super::version_range::VersionRange;
use super::{LayerOperation, LayerSelector, OciRef, OciSource, SourceKind, SourceRef};

/// Polls cost a HEAD request each; five minutes, as for buckets.
const DEFAULT_OCI_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// The media type of the one content layer of Flux's artifacts.
pub const FLUX_CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";

impl Checker<'_> {
    pub(super) fn oci_source(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawOciSource>,
    ) -> Option<OciSource> {
        let before = self.problems.len();
        let raw = raw.into_inner();
        self.oci_url(&raw.url, &format!("{key}.url"));
        let reference = match &raw.reference {
            Some(reference) => self.oci_ref(reference, &format!("{key}.ref")),
            None => Some(OciRef::Tag("latest".to_string())),
        };
        let file = |this: &mut Self, value: &Option<Spanned<String>>, field: &str| {
            value
                .as_ref()
                .and_then(|v| this.absolute_path(v, &format!("{key}.{field}"), true))
        };
        let password_file = file(self, &raw.password_file, "password_file");
        let ca_file = file(self, &raw.ca_file, "ca_file");
        let cosign_public_key_file = raw.verify.as_ref().and_then(|verify| {
            self.absolute_path(
                &verify.get_ref().cosign_public_key_file,
                &format!("{key}.verify.cosign_public_key_file"),
                true,
            )
        });
        self.together(
            key,
            ("username", &raw.username),
            ("password_file", &raw.password_file),
        );
        let insecure = raw.insecure.as_ref().is_some_and(|i| *i.get_ref());
        if insecure {
            self.not_over_plain_http(
                key,
                &[
                    (&raw.password_file, "password_file"),
                    (&raw.ca_file, "ca_file"),
                ],
            );
        }
        let layer_selector = match &raw.layer_selector {
            Some(selector) => self.layer_selector(selector, &format!("{key}.layer_selector")),
            None => Some(LayerSelector {
                media_type: FLUX_CONTENT_MEDIA_TYPE.to_string(),
                operation: LayerOperation::Extract,
            }),
        };
        let interval = self.optional_duration(
            &raw.interval,
            &format!("{key}.interval"),
            DEFAULT_OCI_INTERVAL,
        );
        let timeout =
            self.optional_duration(&raw.timeout, &format!("{key}.timeout"), DEFAULT_GIT_TIMEOUT);
        if self.problems.len() != before {
            return None;
        }
        Some(OciSource {
            name: name.to_string(),
            url: raw.url.get_ref().trim_end_matches('/').to_string(),
            reference: reference?,
            interval: interval?,
            timeout: timeout?,
            username: raw.username.map(Spanned::into_inner),
            password_file,
            ca_file,
            insecure,
            layer_selector: layer_selector?,
            cosign_public_key_file,
            suspend: raw.suspend.map(Spanned::into_inner).unwrap_or(false),
        })
    }

    /// `oci://HOST[:PORT]/REPOSITORY`: no credentials, no tag or digest
    /// (they belong in `ref`), a repository name as the OCI spec allows.
    fn oci_url(&mut self, url: &Spanned<String>, key: &str) {
        let written = url.get_ref();
        if written == super::BUNDLE_URL {
            return;
        }
        let Some(rest) = written.strip_prefix("oci://") else {
            self.problem(
                url.span(),
                key,
                "an OCI artifact URL is oci://HOST[:PORT]/REPOSITORY",
            );
            return;
        };
        let (host, repository) = rest
            .trim_end_matches('/')
            .split_once('/')
            .unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
            self.problem(
                url.span(),
                key,
                "the URL must name a host and hold no credentials: use username + password_file",
            );
            return;
        }
        let repository_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !repository_ok {
            self.problem(
                url.span(),
                key,
                format!(
                    "{repository:?} is not a repository name (lowercase letters, digits, '.', '_', '-' and '/'; the tag or digest goes in ref)"
                ),
            );
        }
    }

    fn oci_ref(&mut self, raw: &Spanned<RawOciRef>, key: &str) -> Option<OciRef> {
        let RawOciRef {
            tag,
            semver,
            digest,
        } = raw.get_ref();
        let given = [tag.is_some(), semver.is_some(), digest.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.problem(raw.span(), key, "give exactly one of tag, semver or digest");
            return None;
        }
        if let Some(tag) = tag {
            if !valid_tag(tag.get_ref()) {
                self.problem(
                    tag.span(),
                    &format!("{key}.tag"),
                    format!("{:?} is not an OCI tag", tag.get_ref()),
                );
                return None;
            }
            return Some(OciRef::Tag(tag.get_ref().clone()));
        }
        if let Some(range) = semver {
            return match VersionRange::parse(range.get_ref()) {
                Ok(range) => Some(OciRef::Semver(range)),
                Err(err) => {
                    self.problem(range.span(), &format!("{key}.semver"), err.to_string());
                    None
                }
            };
        }
        let digest = digest.as_ref()?;
        if !is_sha256_digest(digest.get_ref()) {
            self.problem(
                digest.span(),
                &format!("{key}.digest"),
                "a digest is \"sha256:\" and 64 hex digits",
            );
            return None;
        }
        Some(OciRef::Digest(digest.get_ref().to_ascii_lowercase()))
    }

    fn layer_selector(
        &mut self,
        raw: &Spanned<RawLayerSelector>,
        key: &str,
    ) -> Option<LayerSelector> {
        let raw = raw.get_ref();
        let operation = match &raw.operation {
            None => LayerOperation::Extract,
            Some(value) => match value.get_ref().as_str() {
                "extract" => LayerOperation::Extract,
                "copy" => LayerOperation::Copy,
                other => {
                    self.problem(
                        value.span(),
                        &format!("{key}.operation"),
                        format!("unknown operation {other:?}: use \"extract\" or \"copy\""),
                    );
                    return None;
                }
            },
        };
        let media_type = match &raw.media_type {
            None => FLUX_CONTENT_MEDIA_TYPE.to_string(),
            Some(value) if value.get_ref().is_empty() => {
                self.problem(
                    value.span(),
                    &format!("{key}.media_type"),
                    "must not be empty",
                );
                return None;
            }
            Some(value) => value.get_ref().clone(),
        };
        Some(LayerSelector {
            media_type,
            operation,
        })
    }
}

/// The OCI distribution spec's tag grammar.
fn valid_tag(tag: &str) -> bool {
    tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl OciSource {
    pub fn source_ref(&self) -> SourceRef {
        SourceRef::new(SourceKind::Oci, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_tag;

    #[test]
    fn tags_follow_the_distribution_spec() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("v1.2.3_rc-1"));
        assert!(!valid_tag(".hidden"));
        assert!(!valid_tag("a:b"));
        assert!(!valid_tag(&"x".repeat(129)));
    }
}
