//! SQLite schema and migrations; the only code that writes SQL.
