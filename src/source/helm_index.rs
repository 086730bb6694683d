//! A Helm repository's `index.yaml`, read as a stream of YAML events that
//! keeps only the entries of the charts asked for: a 50 MiB index costs
//! libyaml's buffer and those entries, never a tree of the whole file
//! (Flux's source-controller needs ~800 MiB for a 22 MiB index).
//!
//! # Guarantees
//! - Input past the caller's byte limit, invalid YAML, a top level that is
//!   not a map, no `apiVersion` or `entries`, or a kept entry whose
//!   `digest` is not a sha256 fail the whole index: the caller keeps the
//!   last good one.
//! - A kept entry without a semver `version`, a `urls` or a `digest` is
//!   dropped with a warning: kedge installs no chart it cannot verify.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::kustomize::libyaml::{Event, Parser};

use crate::config::version_range::parse_version;

/// The kept part of an index, written as the repository's artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Chart name to its versions, in the index's order.
    pub entries: BTreeMap<String, Vec<ChartVersion>>,
}

/// One version of a chart in an index: what kedge uses of it, so that a
/// regenerated index (new `created` times) is the same kept index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartVersion {
    pub name: String,
    pub version: String,
    /// Where the `.tgz` is, absolute or relative to the repository URL.
    pub urls: Vec<String>,
    /// sha256 of the `.tgz`, lowercase hex.
    pub digest: String,
    #[serde(
        rename = "appVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
}

/// Why an index was refused.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading the index: {0}")]
    Read(#[source] std::io::Error),
    #[error("index.yaml line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("index.yaml: {0}")]
    Invalid(String),
}

/// Reads an index from `reader`, keeping the entries of `wanted` charts.
pub fn parse<'r>(reader: impl Read + 'r, wanted: &BTreeSet<String>) -> Result<Index, IndexError> {
    let mut events = Events {
        parser: Parser::from_reader(Box::new(reader)),
    };
    let mut index = Index::default();
    let mut saw_entries = false;
    events.expect_document_map()?;
    while let Some(key) = events.next_key()? {
        match key.as_str() {
            "apiVersion" => index.api_version = events.scalar("apiVersion")?,
            "entries" => {
                saw_entries = true;
                entries(&mut events, wanted, &mut index.entries)?;
            }
            _ => events.skip_value()?,
        }
    }
    if index.api_version.is_empty() {
        return Err(IndexError::Invalid("no apiVersion".to_string()));
    }
    if !saw_entries {
        return Err(IndexError::Invalid("no entries".to_string()));
    }
    Ok(index)
}

fn entries(
    events: &mut Events<'_>,
    wanted: &BTreeSet<String>,
    kept: &mut BTreeMap<String, Vec<ChartVersion>>,
) -> Result<(), IndexError> {
    match events.next()? {
        // `entries:` with nothing under it: an empty repository.
        (Event::Scalar(scalar), _) if scalar.value.is_empty() || scalar.value == "null" => {
            return Ok(())
        }
        (Event::MappingStart { .. }, _) => {}
        (_, line) => return Err(events.invalid(line, "entries is not a map")),
    }
    while let Some(chart) = events.next_key()? {
        if !wanted.contains(&chart) {
            events.skip_value()?;
            continue;
        }
        let versions = kept.entry(chart.clone()).or_default();
        events.expect_sequence()?;
        loop {
            match events.next()? {
                (Event::SequenceEnd, _) => break,
                (Event::MappingStart { .. }, line) => {
                    if let Some(version) = entry(events, &chart, line)? {
                        versions.push(version);
                    }
                }
                (_, line) => return Err(events.invalid(line, "an entry is not a map")),
            }
        }
    }
    Ok(())
}

/// One entry (its map already opened); `None` when it is dropped.
fn entry(
    events: &mut Events<'_>,
    chart: &str,
    line: usize,
) -> Result<Option<ChartVersion>, IndexError> {
    let mut version = ChartVersion::default();
    while let Some(key) = events.next_key()? {
        match key.as_str() {
            "name" => version.name = events.scalar("name")?,
            "version" => version.version = events.scalar("version")?,
            "digest" => version.digest = events.scalar("digest")?,
            "appVersion" => version.app_version = Some(events.scalar("appVersion")?),
            "deprecated" => version.deprecated = events.scalar("deprecated")? == "true",
            "urls" => version.urls = events.scalar_list("urls")?,
            _ => events.skip_value()?,
        }
    }
    if !version.digest.is_empty() && !is_sha256(&version.digest) {
        return Err(events.invalid(
            line,
            &format!(
                "chart {chart} {}: digest {:?} is not a sha256",
                version.version, version.digest
            ),
        ));
    }
    let dropped = if parse_version(&version.version).is_none() {
        Some("its version is not semver")
    } else if version.urls.is_empty() {
        Some("it has no urls")
    } else if version.digest.is_empty() {
        Some("it has no digest to verify the download against")
    } else {
        None
    };
    if let Some(why) = dropped {
        tracing::warn!(chart, version = %version.version, line, "index entry left out: {why}");
        return Ok(None);
    }
    if version.name.is_empty() {
        version.name = chart.to_string();
    }
    Ok(Some(version))
}

fn is_sha256(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

struct Events<'r> {
    parser: Parser<'r>,
}

impl Events<'_> {
    fn next(&mut self) -> Result<(Event, usize), IndexError> {
        self.parser
            .next_event()
            .map_err(|err| match self.parser.take_read_error() {
                Some(read) => IndexError::Read(read),
                None => IndexError::Syntax {
                    line: err.line,
                    message: err.message,
                },
            })
    }

    fn invalid(&self, line: usize, what: &str) -> IndexError {
        IndexError::Invalid(format!("line {line}: {what}"))
    }

    fn expect_document_map(&mut self) -> Result<(), IndexError> {
        loop {
            match self.next()? {
                (Event::StreamStart | Event::DocumentStart, _) => {}
                (Event::MappingStart { .. }, _) => return Ok(()),
                (_, line) => return Err(self.invalid(line, "the index is not a map")),
            }
        }
    }

    fn expect_sequence(&mut self) -> Result<(), IndexError> {
        match self.next()? {
            (Event::SequenceStart { .. }, _) => Ok(()),
            (_, line) => Err(self.invalid(line, "a chart's versions are not a list")),
        }
    }

    /// The next key of the open map, `None` at its end.
    fn next_key(&mut self) -> Result<Option<String>, IndexError> {
        match self.next()? {
            (Event::MappingEnd, _) => Ok(None),
            (Event::Scalar(scalar), _) => Ok(Some(scalar.value)),
            (_, line) => Err(self.invalid(line, "a map key is not a string")),
        }
    }

    fn scalar(&mut self, key: &str) -> Result<String, IndexError> {
        match self.next()? {
            (Event::Scalar(scalar), _) => Ok(scalar.value),
            (_, line) => Err(self.invalid(line, &format!("{key} is not a string"))),
        }
    }

    fn scalar_list(&mut self, key: &str) -> Result<Vec<String>, IndexError> {
        let mut items = Vec::new();
        match self.next()? {
            (Event::SequenceStart { .. }, _) => {}
            (_, line) => return Err(self.invalid(line, &format!("{key} is not a list"))),
        }
        loop {
            match self.next()? {
                (Event::SequenceEnd, _) => return Ok(items),
                (Event::Scalar(scalar), _) => items.push(scalar.value),
                (_, line) => return Err(self.invalid(line, &format!("{key} holds a non-string"))),
            }
        }
    }

    /// Skips one value, however deep, holding nothing of it.
    fn skip_value(&mut self) -> Result<(), IndexError> {
        let mut depth: usize = 0;
        loop {
            match self.next()?.0 {
                Event::MappingStart { .. } | Event::SequenceStart { .. } => depth += 1,
                Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
                Event::StreamEnd => return Err(IndexError::Invalid("unexpected end".to_string())),
                _ => {}
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"apiVersion: v1
entries:
  nginx:
  - apiVersion: v2
    name: nginx
    version: 1.0.0
    digest: 0000000000000000000000000000000000000000000000000000000000000000
    urls: [charts/nginx-1.0.0.tgz]
    maintainers:
    - {name: a, email: b}
  redis:
  - name: redis
    version: 18.1.0
    appVersion: "7.2"
    created: "2024-01-01T00:00:00Z"
    digest: 1111111111111111111111111111111111111111111111111111111111111111
    urls:
    - https://charts.example.org/redis-18.1.0.tgz
    dependencies:
    - name: common
      version: 2.x
  - name: redis
    version: latest
    digest: 1111111111111111111111111111111111111111111111111111111111111111
    urls: [x]
  - name: redis
    version: 17.0.0
    urls: [redis-17.0.0.tgz]
generated: "2024-01-01T00:00:00Z"
"#;

    fn wanted(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn parse_text(text: &'static str, names: &[&str]) -> Result<Index, IndexError> {
        parse(std::io::Cursor::new(text.as_bytes()), &wanted(names))
    }

    #[test]
    fn keeps_only_wanted_charts_and_verifiable_entries() -> Result<(), IndexError> {
        let index = parse_text(INDEX, &["redis"])?;
        assert_eq!(index.api_version, "v1");
        assert_eq!(index.entries.keys().collect::<Vec<_>>(), ["redis"]);
        let versions = &index.entries["redis"];
        assert_eq!(
            versions.len(),
            1,
            "non-semver and digest-less entries are dropped"
        );
        assert_eq!(versions[0].version, "18.1.0");
        assert_eq!(versions[0].app_version.as_deref(), Some("7.2"));
        assert_eq!(
            versions[0].urls,
            ["https://charts.example.org/redis-18.1.0.tgz"]
        );
        Ok(())
    }

    #[test]
    fn refuses_broken_indexes() {
        for (text, what) in [
            ("entries: {}\n", "no apiVersion"),
            ("apiVersion: v1\n", "no entries"),
            ("- a\n- b\n", "not a map"),
            ("apiVersion: v1\nentries: {redis: [{name: redis, version: 1.0.0, urls: [x], digest: nothex}]}\n", "sha256"),
            ("apiVersion: v1\nentries:\n  redis: [\n", "line"),
        ] {
            let err = match parse_text(text, &["redis"]) {
                Ok(index) => panic!("{text:?} parsed: {index:?}"),
                Err(err) => err.to_string(),
            };
            assert!(err.contains(what), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_read_error_is_not_reported_as_yaml() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("too large"))
            }
        }
        match parse(Failing, &wanted(&["redis"])) {
            Err(IndexError::Read(err)) => assert_eq!(err.to_string(), "too large"),
            other => panic!("expected a read error, got {other:?}"),
        }
    }
}
