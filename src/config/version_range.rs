//! Semver ranges as Flux and Helm write them (Masterminds/semver):
//! `*`, `1.2.x`, `~1.2`, `^1.2.3`, `>=1.0 <2`, `>=1.0, <2`, `1.0 - 1.4`,
//! `!=1.3.0` and alternatives joined by `||`. Comparators of one
//! alternative must all hold. A prerelease version matches only an
//! alternative that names a prerelease itself, as in Masterminds.

use std::fmt;

use semver::{Prerelease, Version};

/// A parsed range; [`VersionRange::highest`] picks like Flux does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    written: String,
    alternatives: Vec<Vec<Bound>>,
}

/// One comparator, as the versions it admits: `lower <= v < upper` (each
/// end optional, `lower` exclusive when `exclusive_lower`), or everything
/// outside that when `negated`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    lower: Option<Version>,
    exclusive_lower: bool,
    upper: Option<Version>,
    negated: bool,
    names_prerelease: bool,
}

/// Why a range does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad version range {range:?}: {why}")]
pub struct RangeError {
    pub range: String,
    pub why: String,
}

/// A version written with one, two or three numbers, `x`/`*` standing for
/// any number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Prerelease,
}

impl Partial {
    fn parse(text: &str) -> Result<Partial, String> {
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (numbers, pre) = match text.split_once('-') {
            Some((numbers, pre)) => (numbers, pre),
            None => (text, ""),
        };
        let numbers = numbers.split('+').next().unwrap_or(numbers);
        let mut parts = numbers.split('.');
        let mut next = |what: &str| -> Result<Option<u64>, String> {
            match parts.next() {
                None | Some("x" | "X" | "*") => Ok(None),
                Some(n) => n
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{text:?}: {what} {n:?} is not a number")),
            }
        };
        let (major, minor, patch) = (next("major")?, next("minor")?, next("patch")?);
        if parts.next().is_some() {
            return Err(format!("{text:?} has more than three numbers"));
        }
        let pre = Prerelease::new(pre).map_err(|err| format!("{text:?}: {err}"))?;
        Ok(Partial {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// The lowest version this partial covers.
    fn floor(&self) -> Version {
        let mut version = Version::new(
            self.major.unwrap_or(0),
            self.minor.unwrap_or(0),
            self.patch.unwrap_or(0),
        );
        version.pre = self.pre.clone();
        version
    }

    /// The first version past everything this partial covers (`None`: no
    /// such bound, as for `*`).
    fn ceiling(&self) -> Option<Version> {
        match (self.major, self.minor, self.patch) {
            (None, _, _) => None,
            (Some(major), None, _) => Some(Version::new(major + 1, 0, 0)),
            (Some(major), Some(minor), None) => Some(Version::new(major, minor + 1, 0)),
            (Some(major), Some(minor), Some(patch)) => {
                let mut exact = Version::new(major, minor, patch);
                if self.pre.is_empty() {
                    exact.patch += 1;
                    // The lowest version above major.minor.patch.
                    exact.pre = Prerelease::new("0").unwrap_or(Prerelease::EMPTY);
                    Some(exact)
                } else {
                    exact.pre = self.pre.clone();
                    exact.build = semver::BuildMetadata::EMPTY;
                    Some(bump_just_above(exact))
                }
            }
        }
    }
}

/// The smallest version ordered after `version` (a prerelease): its
/// prerelease with `.0` appended.
fn bump_just_above(mut version: Version) -> Version {
    let above = format!("{}.0", version.pre.as_str());
    version.pre = Prerelease::new(&above).unwrap_or(version.pre);
    version
}

impl Bound {
    fn range(lower: Option<Version>, upper: Option<Version>, partial: &Partial) -> Bound {
        Bound {
            lower,
            exclusive_lower: false,
            upper,
            negated: false,
            names_prerelease: !partial.pre.is_empty(),
        }
    }

    fn parse(op: &str, partial: Partial) -> Result<Bound, String> {
        let floor = partial.floor();
        let ceiling = partial.ceiling();
        Ok(match op {
            "" | "=" => Bound::range(Some(floor), ceiling, &partial),
            "!=" => Bound {
                negated: true,
                ..Bound::range(Some(floor), ceiling, &partial)
            },
            ">=" => Bound::range(Some(floor), None, &partial),
            ">" => match ceiling {
                Some(ceiling) => Bound::range(Some(ceiling), None, &partial),
                // Above every version: nothing.
                None => Bound::range(Some(floor.clone()), Some(floor), &partial),
            },
            "<" => Bound::range(None, Some(floor), &partial),
            "<=" => Bound::range(None, ceiling, &partial),
            "~" | "~>" => {
                let upper = match (partial.major, partial.minor) {
                    (Some(major), None) => Some(Version::new(major + 1, 0, 0)),
                    (Some(major), Some(minor)) => Some(Version::new(major, minor + 1, 0)),
                    (None, _) => None,
                };
                Bound::range(Some(floor), upper, &partial)
            }
            "^" => {
                let upper = match (partial.major, partial.minor, partial.patch) {
                    (None, _, _) => None,
                    (Some(0), Some(0), Some(patch)) => Some(Version::new(0, 0, patch + 1)),
                    (Some(0), Some(minor), _) if minor > 0 || partial.patch.is_none() => {
                        Some(Version::new(0, minor + 1, 0))
                    }
                    (Some(major), _, _) => Some(Version::new(major + 1, 0, 0)),
                };
                Bound::range(Some(floor), upper, &partial)
            }
            other => return Err(format!("unknown operator {other:?}")),
        })
    }

    fn admits(&self, version: &Version) -> bool {
        let above = match &self.lower {
            Some(lower) if self.exclusive_lower => version > lower,
            Some(lower) => version >= lower,
            None => true,
        };
        let below = self.upper.as_ref().is_none_or(|upper| version < upper);
        (above && below) != self.negated
    }
}

const OPERATORS: [&str; 9] = ["!=", ">=", "<=", "~>", "=", ">", "<", "~", "^"];

/// Splits `>= 1.0, <2` into `[">=1.0", "<2"]`: an operator written apart
/// from its version is joined to it.
fn comparators(alternative: &str) -> Vec<String> {
    let mut joined: Vec<String> = Vec::new();
    for token in alternative
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
    {
        match joined.last_mut() {
            Some(last) if OPERATORS.contains(&last.as_str()) => last.push_str(token),
            _ => joined.push(token.to_string()),
        }
    }
    joined
}

fn split_operator(comparator: &str) -> (&str, &str) {
    OPERATORS
        .iter()
        .find_map(|op| comparator.strip_prefix(op).map(|rest| (*op, rest)))
        .unwrap_or(("", comparator))
}

fn parse_alternative(alternative: &str) -> Result<Vec<Bound>, String> {
    let tokens = comparators(alternative);
    let mut bounds = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        // A hyphen range: `1.0 - 1.4` is `>=1.0 <=1.4`.
        if tokens.get(index + 1).map(String::as_str) == Some("-") {
            let upper = tokens
                .get(index + 2)
                .ok_or_else(|| "a hyphen range needs an upper version".to_string())?;
            bounds.push(Bound::parse(">=", Partial::parse(&tokens[index])?)?);
            bounds.push(Bound::parse("<=", Partial::parse(upper)?)?);
            index += 3;
            continue;
        }
        let (op, version) = split_operator(&tokens[index]);
        if version.is_empty() {
            return Err(format!("operator {op:?} has no version"));
        }
        bounds.push(Bound::parse(op, Partial::parse(version)?)?);
        index += 1;
    }
    Ok(bounds)
}

impl VersionRange {
    pub fn parse(written: &str) -> Result<VersionRange, RangeError> {
        let error = |why: String| RangeError {
            range: written.to_string(),
            why,
        };
        let mut alternatives = Vec::new();
        for alternative in written.split("||") {
            alternatives.push(parse_alternative(alternative).map_err(error)?);
        }
        Ok(VersionRange {
            written: written.to_string(),
            alternatives,
        })
    }

    /// Every version (less prereleases), as an absent `version` means.
    pub fn any() -> VersionRange {
        VersionRange {
            written: "*".to_string(),
            alternatives: vec![Vec::new()],
        }
    }

    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|bounds| {
            let prerelease_allowed = bounds.iter().any(|b| b.names_prerelease);
            (version.pre.is_empty() || prerelease_allowed)
                && bounds.iter().all(|b| b.admits(version))
        })
    }

    /// The highest of `versions` in range, with its index.
    pub fn highest<'v>(
        &self,
        versions: impl IntoIterator<Item = &'v str>,
    ) -> Option<(usize, Version)> {
        versions
            .into_iter()
            .enumerate()
            .filter_map(|(index, written)| Some((index, parse_version(written)?)))
            .filter(|(_, version)| self.matches(version))
            .max_by(|(_, a), (_, b)| a.cmp_precedence(b).then_with(|| a.cmp(b)))
    }
}

/// A chart version (a leading `v` allowed), `None` when it is not semver.
pub fn parse_version(written: &str) -> Option<Version> {
    Version::parse(written.strip_prefix(['v', 'V']).unwrap_or(written)).ok()
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(range: &str, versions: &[&str]) -> Option<String> {
        let range = VersionRange::parse(range).unwrap_or_else(|err| panic!("{err}"));
        range
            .highest(versions.iter().copied())
            .map(|(index, _)| versions[index].to_string())
    }

    const VERSIONS: &[&str] = &[
        "0.9.0",
        "1.0.0",
        "1.2.0",
        "1.2.7",
        "1.3.0",
        "1.10.1",
        "2.0.0-rc.1",
        "2.0.0",
        "2.1.0",
    ];

    #[test]
    fn flux_style_ranges_pick_the_highest_match() {
        for (range, expected) in [
            ("*", Some("2.1.0")),
            ("", Some("2.1.0")),
            ("~1.2", Some("1.2.7")),
            ("~1.2.3", Some("1.2.7")),
            ("~1.2.8", None),
            ("~1", Some("1.10.1")),
            ("^1.2", Some("1.10.1")),
            (">=1.0 <2", Some("1.10.1")),
            (">=1.0, <2", Some("1.10.1")),
            (">= 1.0 < 2", Some("1.10.1")),
            ("1.2.x", Some("1.2.7")),
            ("1.2", Some("1.2.7")),
            ("1.2.0", Some("1.2.0")),
            ("=1.3.0", Some("1.3.0")),
            ("1.0 - 1.3", Some("1.3.0")),
            (">1.3", Some("2.1.0")),
            ("<=1.2", Some("1.2.7")),
            ("<1.2", Some("1.0.0")),
            ("^0.9", Some("0.9.0")),
            (">=1.0 <2 !=1.10.1", Some("1.3.0")),
            ("~1.2 || ~2.0", Some("2.0.0")),
            (">=3", None),
        ] {
            assert_eq!(
                pick(range, VERSIONS).as_deref(),
                expected,
                "range {range:?}"
            );
        }
    }

    #[test]
    fn prereleases_match_only_a_range_that_names_one() {
        assert_eq!(
            pick(">=2.0.0-0 <2.0.0", VERSIONS).as_deref(),
            Some("2.0.0-rc.1")
        );
        assert_eq!(
            pick("<2.0.0", &["1.0.0", "2.0.0-rc.1"]).as_deref(),
            Some("1.0.0")
        );
    }

    #[test]
    fn versions_that_are_not_semver_are_never_picked() {
        assert_eq!(
            pick("*", &["latest", "1.0", "v1.1.0"]).as_deref(),
            Some("v1.1.0")
        );
    }

    #[test]
    fn bad_ranges_are_errors() {
        for bad in [">=", "1.2.3.4", "~x.y", ">=a.b", "1.0 -"] {
            assert!(VersionRange::parse(bad).is_err(), "{bad:?} must not parse");
        }
    }
}
