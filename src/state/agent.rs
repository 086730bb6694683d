//! The daemon's own state: problems that are not about one source or
//! kustomization (a refused config), suspensions made from the CLI, and
//! the last good config read from a source.

use rusqlite::{params, OptionalExtension};

use super::{now_millis, query_error, Result, Store};

/// The key of the problem recorded while the config file on disk is refused.
pub const CONFIG_REFUSED: &str = "config";
/// The key of the problem recorded while the config read from `[agent]
/// config_from`'s source is refused.
pub const CONFIG_FROM_REFUSED: &str = "config_from";

/// A problem of the daemon itself, shown by `kedge status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProblem {
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub message: String,
}

impl Store {
    /// Keeps `layer` (serialised by its owner) as the last good config
    /// read from `[agent] config_from`, replacing the one before.
    pub fn save_config_layer(&self, layer: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO config_layer (id, layer, at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET layer = excluded.layer, at = excluded.at",
                params![layer, now_millis()],
            )
            .map_err(query_error("saving the config read from a source"))?;
        Ok(())
    }

    /// The layer [`Store::save_config_layer`] kept, if any.
    pub fn config_layer(&self) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT layer FROM config_layer WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(query_error("reading the config read from a source"))
    }

    /// Records (or replaces) the problem `key`.
    pub fn set_agent_problem(&self, key: &str, message: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO agent_problems (key, at, message) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET at = excluded.at, message = excluded.message",
                params![key, now_millis(), message],
            )
            .map_err(query_error("recording agent problem"))?;
        Ok(())
    }

    /// Forgets the problem `key`; `true` if there was one.
    pub fn clear_agent_problem(&self, key: &str) -> Result<bool> {
        let removed = self
            .conn
            .execute("DELETE FROM agent_problems WHERE key = ?1", params![key])
            .map_err(query_error("clearing agent problem"))?;
        Ok(removed > 0)
    }

    /// Every current problem of the daemon, by key.
    pub fn agent_problems(&self) -> Result<Vec<AgentProblem>> {
        let mut statement = self
            .conn
            .prepare("SELECT key, at, message FROM agent_problems ORDER BY key")
            .map_err(query_error("listing agent problems"))?;
        let rows = statement
            .query_map([], |row| {
                Ok(AgentProblem {
                    key: row.get(0)?,
                    at: row.get(1)?,
                    message: row.get(2)?,
                })
            })
            .map_err(query_error("listing agent problems"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(query_error("listing agent problems"))
    }

    /// Marks `kind/name` suspended until [`Store::resume`].
    pub fn suspend(&self, kind: &str, name: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO suspensions (kind, name, at) VALUES (?1, ?2, ?3)",
                params![kind, name, now_millis()],
            )
            .map_err(query_error("suspending"))?;
        Ok(())
    }

    /// Lifts a suspension; `true` if `kind/name` was suspended.
    pub fn resume(&self, kind: &str, name: &str) -> Result<bool> {
        let removed = self
            .conn
            .execute(
                "DELETE FROM suspensions WHERE kind = ?1 AND name = ?2",
                params![kind, name],
            )
            .map_err(query_error("resuming"))?;
        Ok(removed > 0)
    }

    /// Whether `kind/name` is suspended from the CLI.
    pub fn is_suspended(&self, kind: &str, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM suspensions WHERE kind = ?1 AND name = ?2",
                params![kind, name],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(query_error("reading suspensions"))
    }

    /// Every suspension made from the CLI, as `(kind, name)`.
    pub fn suspensions(&self) -> Result<Vec<(String, String)>> {
        let mut statement = self
            .conn
            .prepare("SELECT kind, name FROM suspensions ORDER BY kind, name")
            .map_err(query_error("listing suspensions"))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(query_error("listing suspensions"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(query_error("listing suspensions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_lasts_until_resumed() -> Result<()> {
        let store = Store::open_in_memory()?;
        store.suspend("kustomization", "apps")?;
        store.suspend("kustomization", "apps")?;
        assert!(store.is_suspended("kustomization", "apps")?);
        assert!(!store.is_suspended("git", "apps")?);
        assert_eq!(
            store.suspensions()?,
            [("kustomization".to_string(), "apps".to_string())]
        );
        assert!(store.resume("kustomization", "apps")?);
        assert!(!store.resume("kustomization", "apps")?);
        assert!(store.suspensions()?.is_empty());
        Ok(())
    }

    #[test]
    fn an_agent_problem_is_replaced_and_cleared() -> Result<()> {
        let store = Store::open_in_memory()?;
        store.set_agent_problem(CONFIG_REFUSED, "first")?;
        store.set_agent_problem(CONFIG_REFUSED, "second")?;
        let problems = store.agent_problems()?;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "second");
        assert!(store.clear_agent_problem(CONFIG_REFUSED)?);
        assert!(!store.clear_agent_problem(CONFIG_REFUSED)?);
        assert!(store.agent_problems()?.is_empty());
        Ok(())
    }
}
