//! The daemon's edges: systemd notify and watchdog, signals, the control
//! socket and journald.
