//! Validation of `[bucket.NAME]` tables: provider, endpoint, bucket name,
//! prefix, credential files and limits.

use toml::Spanned;

use super::raw::RawBucketSource;
use super::validate::{Checker, DEFAULT_GIT_TIMEOUT};
use super::{BucketProvider, BucketSource};

/// Flux's default interval of a Bucket is a minute too short for object
/// storage billed per request: kedge polls every five.
const DEFAULT_BUCKET_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// The default of `max_objects`.
pub const DEFAULT_MAX_OBJECTS: u64 = 20_000;
/// The default of `max_total_bytes` (the agent's limit of any artifact).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 1 << 30;

impl Checker<'_> {
    pub(super) fn bucket_source(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawBucketSource>,
    ) -> Option<BucketSource> {
        let before = self.problems.len();
        let table_span = raw.span();
        let raw = raw.into_inner();
        let provider = self.bucket_provider(&raw.provider, key);
        let insecure = raw.insecure.as_ref().is_some_and(|i| *i.get_ref());
        let endpoint = match &raw.endpoint {
            Some(endpoint) => self.endpoint(endpoint, &format!("{key}.endpoint"), insecure),
            None => {
                if matches!(
                    provider,
                    Some(BucketProvider::Generic | BucketProvider::Azure)
                ) {
                    self.problem(
                        table_span.clone(),
                        key,
                        "this provider needs endpoint (e.g. \"minio.local:9000\")",
                    );
                }
                None
            }
        };
        if let (Some(BucketProvider::Gcp), Some(endpoint)) = (provider, &raw.endpoint) {
            self.problem(
                endpoint.span(),
                &format!("{key}.endpoint"),
                "endpoint is not used with gcp",
            );
        }
        let bucket_name = self.bucket_name(&raw.bucket_name, &format!("{key}.bucket_name"));
        let prefix = match &raw.prefix {
            Some(prefix) => self.prefix(prefix, &format!("{key}.prefix")),
            None => Some(String::new()),
        };
        let file = |this: &mut Self, value: &Option<Spanned<String>>, field: &str| {
            value
                .as_ref()
                .and_then(|v| this.absolute_path(v, &format!("{key}.{field}"), true))
        };
        let access_key_id_file = file(self, &raw.access_key_id_file, "access_key_id_file");
        let secret_access_key_file =
            file(self, &raw.secret_access_key_file, "secret_access_key_file");
        let ca_file = file(self, &raw.ca_file, "ca_file");
        if let Some(provider) = provider {
            self.bucket_credentials(key, &raw, provider);
        }
        if let (Some(ca), true) = (&raw.ca_file, insecure) {
            self.problem(
                ca.span(),
                &format!("{key}.ca_file"),
                "ca_file is not used with insecure = true (plain HTTP)",
            );
        }
        let interval = self.optional_duration(
            &raw.interval,
            &format!("{key}.interval"),
            DEFAULT_BUCKET_INTERVAL,
        );
        let timeout =
            self.optional_duration(&raw.timeout, &format!("{key}.timeout"), DEFAULT_GIT_TIMEOUT);
        let max_objects = self.positive(&raw.max_objects, key, "max_objects", DEFAULT_MAX_OBJECTS);
        let max_total_bytes = self.positive(
            &raw.max_total_bytes,
            key,
            "max_total_bytes",
            DEFAULT_MAX_TOTAL_BYTES,
        );
        if self.problems.len() != before {
            return None;
        }
        let (provider, bucket_name, prefix) = (provider?, bucket_name?, prefix?);
        let url = display_url(provider, endpoint.as_deref(), &bucket_name, &prefix);
        Some(BucketSource {
            name: name.to_string(),
            provider,
            endpoint,
            bucket_name,
            prefix,
            region: raw.region.map(Spanned::into_inner),
            access_key_id_file,
            secret_access_key_file,
            ca_file,
            interval: interval?,
            timeout: timeout?,
            ignore: raw.ignore.map(Spanned::into_inner).unwrap_or_default(),
            max_objects: max_objects?,
            max_total_bytes: max_total_bytes?,
            suspend: raw.suspend.map(Spanned::into_inner).unwrap_or(false),
            url,
        })
    }

    fn bucket_provider(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
    ) -> Option<BucketProvider> {
        let Some(value) = value else {
            return Some(BucketProvider::Generic);
        };
        match value.get_ref().as_str() {
            "generic" => Some(BucketProvider::Generic),
            "aws" => Some(BucketProvider::Aws),
            "gcp" => Some(BucketProvider::Gcp),
            "azure" => Some(BucketProvider::Azure),
            other => {
                self.problem(
                    value.span(),
                    &format!("{key}.provider"),
                    format!(
                        "unknown provider {other:?}: use \"generic\", \"aws\", \"gcp\" or \"azure\""
                    ),
                );
                None
            }
        }
    }

    /// `host[:port]` or a URL; the scheme follows `insecure`, and a written
    /// `http://` without it is refused: credentials and manifests would
    /// travel in clear text.
    fn endpoint(&mut self, value: &Spanned<String>, key: &str, insecure: bool) -> Option<String> {
        let written = value.get_ref().trim_end_matches('/');
        if written == super::BUNDLE_URL {
            return Some(written.to_string());
        }
        let (scheme, host) = match written.split_once("://") {
            Some((scheme, host)) => (Some(scheme), host),
            None => (None, written),
        };
        let scheme = match (scheme, insecure) {
            (Some("https"), true) => {
                self.problem(
                    value.span(),
                    key,
                    "an https:// endpoint contradicts insecure = true",
                );
                return None;
            }
            (Some("http"), false) => {
                self.problem(
                    value.span(),
                    key,
                    "plain http:// is refused unless insecure = true",
                );
                return None;
            }
            (Some(scheme @ ("http" | "https")), _) => scheme,
            (Some(other), _) => {
                self.problem(
                    value.span(),
                    key,
                    format!("unsupported scheme {other:?}: write host:port, or an https:// URL"),
                );
                return None;
            }
            (None, true) => "http",
            (None, false) => "https",
        };
        if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
            self.problem(
                value.span(),
                key,
                format!("{:?} is not host[:port]", value.get_ref()),
            );
            return None;
        }
        Some(format!("{scheme}://{host}"))
    }

    fn bucket_name(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let name = value.get_ref();
        if name.is_empty() || name.len() > 255 || name.contains(['/', '\\', ' ', '\0']) {
            self.problem(value.span(), key, format!("{name:?} is not a bucket name"));
            return None;
        }
        Some(name.clone())
    }

    /// A prefix names keys, not a directory: it stays a plain string, but
    /// one that could only match keys climbing out of the artifact is refused.
    fn prefix(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let prefix = value.get_ref();
        if prefix.starts_with('/') || prefix.split('/').any(|part| part == "..") {
            self.problem(
                value.span(),
                key,
                format!("{prefix:?} must be relative, without '..'"),
            );
            return None;
        }
        Some(prefix.clone())
    }

    fn bucket_credentials(&mut self, key: &str, raw: &RawBucketSource, provider: BucketProvider) {
        match provider {
            BucketProvider::Generic | BucketProvider::Aws => {
                self.together(
                    key,
                    ("access_key_id_file", &raw.access_key_id_file),
                    ("secret_access_key_file", &raw.secret_access_key_file),
                );
            }
            BucketProvider::Gcp | BucketProvider::Azure => {
                if let Some(id) = &raw.access_key_id_file {
                    self.problem(
                        id.span(),
                        &format!("{key}.access_key_id_file"),
                        "access_key_id_file is not used with gcp or azure: put the service account key (gcp) or the account key (azure) in secret_access_key_file",
                    );
                }
            }
        }
    }

    fn positive(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        field: &str,
        default: u64,
    ) -> Option<u64> {
        let Some(value) = value else {
            return Some(default);
        };
        match u64::try_from(*value.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.problem(
                    value.span(),
                    &format!("{key}.{field}"),
                    format!("{} must be a positive number", value.get_ref()),
                );
                None
            }
        }
    }
}

/// Where the source fetches from, written as a URL for logs and status.
fn display_url(
    provider: BucketProvider,
    endpoint: Option<&str>,
    bucket: &str,
    prefix: &str,
) -> String {
    match (provider, endpoint) {
        // A bundle-only bucket names no server: `Source::is_bundle_only` reads this.
        (_, Some(super::BUNDLE_URL)) => super::BUNDLE_URL.to_string(),
        (_, Some(endpoint)) => format!("{endpoint}/{bucket}/{prefix}"),
        (BucketProvider::Gcp, None) => format!("gs://{bucket}/{prefix}"),
        (_, None) => format!("s3://{bucket}/{prefix}"),
    }
}

impl BucketSource {
    pub fn source_ref(&self) -> super::SourceRef {
        super::SourceRef::new(super::SourceKind::Bucket, &self.name)
    }
}
