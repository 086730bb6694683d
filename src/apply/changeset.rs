//! What an apply or prune did to each object: Flux's `ChangeSet` vocabulary.

use std::fmt;

use super::objref::ObjRef;

/// What happened to one object. The same words appear in logs and in
/// `kedge status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
    Skipped,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Skipped => "skipped",
        })
    }
}

/// One object and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub object: ObjRef,
    pub action: Action,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.object, self.action)
    }
}

/// Every object an apply touched, in apply order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    pub entries: Vec<Change>,
}

impl ChangeSet {
    pub fn push(&mut self, object: ObjRef, action: Action) {
        self.entries.push(Change { object, action });
    }

    pub fn extend(&mut self, other: ChangeSet) {
        self.entries.extend(other.entries);
    }

    /// How many objects got `action`.
    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|c| c.action == action).count()
    }

    /// Whether anything was created, configured or deleted.
    pub fn changed_anything(&self) -> bool {
        self.entries.iter().any(|c| {
            matches!(
                c.action,
                Action::Created | Action::Configured | Action::Deleted
            )
        })
    }

    pub fn action_of(&self, object: &ObjRef) -> Option<Action> {
        self.entries
            .iter()
            .find(|c| &c.object == object)
            .map(|c| c.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> ObjRef {
        ObjRef {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("n".into()),
            name: name.into(),
        }
    }

    #[test]
    fn counts_and_change_detection_follow_the_actions() {
        let mut set = ChangeSet::default();
        set.push(cm("a"), Action::Unchanged);
        set.push(cm("b"), Action::Unchanged);
        assert!(!set.changed_anything());
        set.push(cm("c"), Action::Configured);
        assert!(set.changed_anything());
        assert_eq!(set.count(Action::Unchanged), 2);
        assert_eq!(set.action_of(&cm("c")), Some(Action::Configured));
        assert_eq!(set.entries[2].to_string(), "ConfigMap/n/c configured");
    }
}
