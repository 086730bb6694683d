//! The TOML configuration: schema, defaults, validation with file:line:col
//! errors, and the diff between two configs for a reload.
