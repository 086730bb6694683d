//! `drift = { mode, ignore = [{ paths, target }] }`: what kedge does about
//! drift, and fields it leaves to others. The same shape serves every
//! owner kind that applies (kustomizations; Helm releases'
//! `drift_detection`).

use toml::Spanned;

use super::raw::{RawDrift, RawDriftIgnore, RawObjectSelector};
use super::validate::Checker;

/// What kedge does when an object it applied drifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriftMode {
    /// Revert at once (the drift watch re-applies).
    #[default]
    Correct,
    /// Report only (log, event, status, `kedge diff`); apply only what the
    /// declared state changes.
    Detect,
    /// No drift watch; each interval's apply re-asserts the declared state.
    Off,
}

impl DriftMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftMode::Correct => "correct",
            DriftMode::Detect => "detect",
            DriftMode::Off => "off",
        }
    }
}

/// Which objects a rule or patch names; every field given must match.
/// `name` and `namespace` are anchored regular expressions, as in Flux's
/// (kustomize's) selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectSelector {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub annotation_selector: Option<String>,
}

/// Fields (JSON pointers) of the objects `target` names that kedge
/// leaves to others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftIgnoreRule {
    pub paths: Vec<String>,
    pub target: ObjectSelector,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftPolicy {
    pub mode: DriftMode,
    pub ignore: Vec<DriftIgnoreRule>,
}

/// Whether `path` is a JSON pointer to a field: `/a/b`, no empty segment.
fn is_field_pointer(path: &str) -> bool {
    path.strip_prefix('/')
        .is_some_and(|rest| rest.split('/').all(|s| !s.is_empty()))
}

impl Checker<'_> {
    /// `None` on a problem.
    pub(super) fn drift(
        &mut self,
        raw: &Option<Spanned<RawDrift>>,
        key: &str,
    ) -> Option<DriftPolicy> {
        let Some(raw) = raw else {
            return Some(DriftPolicy::default());
        };
        let key = format!("{key}.drift");
        let before = self.problems.len();
        let mode = match raw.get_ref().mode.as_ref() {
            None => DriftMode::Correct,
            Some(mode) => {
                match mode.get_ref().as_str() {
                    "correct" => DriftMode::Correct,
                    "detect" => DriftMode::Detect,
                    "off" => DriftMode::Off,
                    other => {
                        self.problem(
                        mode.span(),
                        &format!("{key}.mode"),
                        format!("unknown drift mode {other:?}: use \"correct\", \"detect\" or \"off\""),
                    );
                        DriftMode::Correct
                    }
                }
            }
        };
        let ignore = self.drift_ignore_rules(raw.get_ref().ignore.as_deref(), &key);
        (self.problems.len() == before).then_some(DriftPolicy { mode, ignore })
    }

    /// `ignore = [{ paths, target }]` under `key`; problems are recorded.
    pub(super) fn drift_ignore_rules(
        &mut self,
        rules: Option<&[Spanned<RawDriftIgnore>]>,
        key: &str,
    ) -> Vec<DriftIgnoreRule> {
        let mut ignore = Vec::new();
        for (index, rule) in rules.into_iter().flatten().enumerate() {
            let rule_key = format!("{key}.ignore[{index}]");
            let span = rule.span();
            let rule = rule.get_ref();
            if rule.paths.is_empty() {
                self.problem(
                    span.clone(),
                    &format!("{rule_key}.paths"),
                    "name at least one path",
                );
            }
            for path in rule.paths.iter().filter(|p| !is_field_pointer(p)) {
                self.problem(
                    span.clone(),
                    &format!("{rule_key}.paths"),
                    format!("{path:?} is not a JSON pointer to a field (write it like \"/spec/replicas\")"),
                );
            }
            let target = self.object_selector(
                rule.target.as_ref(),
                &format!("{rule_key}.target"),
                span.clone(),
            );
            if target.label_selector.is_some() || target.annotation_selector.is_some() {
                self.problem(
                    span,
                    &format!("{rule_key}.target"),
                    "drift ignore targets select by group, version, kind, name and namespace",
                );
            }
            ignore.push(DriftIgnoreRule {
                paths: rule.paths.clone(),
                target,
            });
        }
        ignore
    }

    /// A selector; name and namespace patterns must be regular expressions.
    pub(super) fn object_selector(
        &mut self,
        raw: Option<&RawObjectSelector>,
        key: &str,
        span: std::ops::Range<usize>,
    ) -> ObjectSelector {
        let Some(raw) = raw else {
            return ObjectSelector::default();
        };
        for pattern in [&raw.name, &raw.namespace].into_iter().flatten() {
            if let Err(err) = regex::Regex::new(&format!("^(?:{pattern})$")) {
                self.problem(
                    span.clone(),
                    key,
                    format!("invalid pattern {pattern:?}: {err}"),
                );
            }
        }
        ObjectSelector {
            group: raw.group.clone(),
            version: raw.version.clone(),
            kind: raw.kind.clone(),
            name: raw.name.clone(),
            namespace: raw.namespace.clone(),
            label_selector: raw.label_selector.clone(),
            annotation_selector: raw.annotation_selector.clone(),
        }
    }
}
