//! A bounded history of events (what happened to which object, when).

use rusqlite::params;

use super::{now_millis, query_error, Result, Store, EVENT_HISTORY_LIMIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Error => "error",
        }
    }

    fn parse(text: &str) -> Severity {
        if text == "error" {
            Severity::Error
        } else {
            Severity::Info
        }
    }
}

/// One event about an object (`kind/name`, e.g. `git/fleet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub kind: String,
    pub name: String,
    pub severity: Severity,
    pub reason: String,
    pub message: String,
}

impl Event {
    /// An event that happens now.
    pub fn new(kind: &str, name: &str, severity: Severity, reason: &str, message: &str) -> Event {
        Event {
            at: now_millis(),
            kind: kind.to_string(),
            name: name.to_string(),
            severity,
            reason: reason.to_string(),
            message: message.to_string(),
        }
    }
}

impl Store {
    /// Appends an event and drops the oldest beyond [`EVENT_HISTORY_LIMIT`].
    pub fn record_event(&self, event: &Event) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO events (at, kind, name, severity, reason, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.at,
                    event.kind,
                    event.name,
                    event.severity.as_str(),
                    event.reason,
                    event.message
                ],
            )
            .map_err(query_error("recording event"))?;
        self.conn
            .execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
                params![EVENT_HISTORY_LIMIT],
            )
            .map_err(query_error("trimming event history"))?;
        Ok(())
    }

    /// The newest `limit` events of `kind/name`, newest first.
    pub fn events(&self, kind: &str, name: &str, limit: usize) -> Result<Vec<Event>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT at, kind, name, severity, reason, message FROM events
                 WHERE kind = ?1 AND name = ?2 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(query_error("listing events"))?;
        let rows = statement
            .query_map(params![kind, name, limit as i64], event_from_row)
            .map_err(query_error("listing events"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(query_error("listing events"))
    }

    /// The newest `limit` events of every object, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT at, kind, name, severity, reason, message FROM events
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(query_error("listing events"))?;
        let rows = statement
            .query_map(params![limit as i64], event_from_row)
            .map_err(query_error("listing events"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(query_error("listing events"))
    }
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        at: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        severity: Severity::parse(&row.get::<_, String>(3)?),
        reason: row.get(4)?,
        message: row.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_only_the_newest_events() -> Result<()> {
        let store = Store::open_in_memory()?;
        let total = EVENT_HISTORY_LIMIT + 5;
        for index in 0..total {
            store.record_event(&Event::new(
                "git",
                "fleet",
                Severity::Info,
                "Succeeded",
                &index.to_string(),
            ))?;
        }
        let events = store.events("git", "fleet", usize::MAX >> 1)?;
        assert_eq!(events.len() as i64, EVENT_HISTORY_LIMIT);
        assert_eq!(events[0].message, (total - 1).to_string());
        Ok(())
    }
}
