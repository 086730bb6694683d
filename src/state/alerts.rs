//! The queue of alerts to deliver: bounded, oldest dropped first.

use rusqlite::params;

use super::{query_error, Result, Store};

/// An alert waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAlert {
    pub id: i64,
    /// The `[alert.NAME]` it goes to.
    pub alert: String,
    /// The event, as JSON.
    pub event: String,
    pub attempts: i64,
}

impl Store {
    /// Queues `event` for `alert`, due now; drops the oldest alerts beyond
    /// `limit` and returns the names of the alerts they were for.
    pub fn queue_alert(
        &self,
        alert: &str,
        event: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.conn
            .execute(
                "INSERT INTO alert_queue (alert, event, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?3)",
                params![alert, event, now],
            )
            .map_err(query_error("queueing an alert"))?;
        let mut over = self
            .conn
            .prepare(
                "DELETE FROM alert_queue WHERE id IN (
                    SELECT id FROM alert_queue ORDER BY id DESC LIMIT -1 OFFSET ?1
                ) RETURNING alert",
            )
            .map_err(query_error("dropping the oldest alerts"))?;
        let dropped = over
            .query_map(params![limit as i64], |row| row.get(0))
            .map_err(query_error("dropping the oldest alerts"))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(query_error("dropping the oldest alerts"))?;
        Ok(dropped)
    }

    /// Up to `limit` alerts due at `now`, oldest first.
    pub fn due_alerts(&self, now: i64, limit: usize) -> Result<Vec<QueuedAlert>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, alert, event, attempts FROM alert_queue
                 WHERE next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(query_error("reading due alerts"))?;
        let rows = statement
            .query_map(params![now, limit as i64], |row| {
                Ok(QueuedAlert {
                    id: row.get(0)?,
                    alert: row.get(1)?,
                    event: row.get(2)?,
                    attempts: row.get(3)?,
                })
            })
            .map_err(query_error("reading due alerts"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(query_error("reading due alerts"))
    }

    /// When the next queued alert is due, if any is queued.
    pub fn next_alert_due(&self) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT MIN(next_attempt_at) FROM alert_queue", [], |row| {
                row.get(0)
            })
            .map_err(query_error("reading the alert queue"))
    }

    /// How many alerts are queued.
    pub fn queued_alerts(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM alert_queue", [], |row| row.get(0))
            .map_err(query_error("counting queued alerts"))
    }

    /// The alert was delivered (or can never be).
    pub fn remove_alert(&self, id: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM alert_queue WHERE id = ?1", params![id])
            .map_err(query_error("removing a delivered alert"))?;
        Ok(())
    }

    /// A delivery failed: try again at `next_attempt_at`.
    pub fn retry_alert(&self, id: i64, next_attempt_at: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE alert_queue SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1",
                params![id, next_attempt_at],
            )
            .map_err(query_error("rescheduling an alert"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_keeps_the_newest_and_says_which_it_dropped() -> Result<()> {
        let store = Store::open_in_memory()?;
        for i in 0..5 {
            let dropped = store.queue_alert(&format!("a{i}"), "{}", 100, 3)?;
            let expected: Vec<String> = if i >= 3 {
                vec![format!("a{}", i - 3)]
            } else {
                vec![]
            };
            assert_eq!(dropped, expected);
        }
        let due: Vec<String> = store
            .due_alerts(100, 10)?
            .into_iter()
            .map(|a| a.alert)
            .collect();
        assert_eq!(due, ["a2", "a3", "a4"]);
        let first = store.due_alerts(100, 1)?[0].id;
        store.retry_alert(first, 500)?;
        assert_eq!(store.due_alerts(100, 10)?.len(), 2);
        assert_eq!(store.next_alert_due()?, Some(100));
        for alert in store.due_alerts(100, 10)? {
            store.remove_alert(alert.id)?;
        }
        assert_eq!(store.next_alert_due()?, Some(500));
        assert_eq!(store.due_alerts(500, 10)?[0].attempts, 1);
        assert_eq!(store.queued_alerts()?, 1);
        Ok(())
    }
}
