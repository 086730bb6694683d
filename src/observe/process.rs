//! The standard `process_*` metrics of Prometheus client libraries, read
//! from `/proc/self` at each scrape (Linux only, as kedge is).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Encodes `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_start_time_seconds`,
/// `process_open_fds` and `process_max_fds`; a value `/proc` does not give
/// is left out.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self/stat` says, in the units the metrics use.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stat) = read_stat() {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.resident_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.virtual_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                stat.start_time_seconds,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                fds.count() as f64,
            )?;
        }
        if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max as f64,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    parse_stat(
        &stat,
        &boot,
        rustix::param::clock_ticks_per_second() as f64,
        rustix::param::page_size() as f64,
    )
}

/// Fields 14, 15 (utime, stime), 22 (starttime), 23 (vsize) and 24 (rss) of
/// `proc_pid_stat(5)`, counted after the command name, which may hold
/// spaces and parentheses; `btime` of `/proc/stat`.
fn parse_stat(stat: &str, proc_stat: &str, ticks: f64, page: f64) -> Option<Stat> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let boot_time: f64 = proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot_time + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces() {
        let stat = "4242 (kedge (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 123456789 300 18446744073709551615";
        let parsed = parse_stat(stat, "cpu  1 2 3\nbtime 1700000000\n", 100.0, 4096.0);
        assert_eq!(
            parsed,
            Some(Stat {
                cpu_seconds: 3.0,
                start_time_seconds: 1_700_000_010.0,
                virtual_bytes: 123_456_789.0,
                resident_bytes: 300.0 * 4096.0,
            })
        );
    }

    #[test]
    fn this_process_has_memory_and_a_start_time() {
        let stat = read_stat();
        assert!(
            stat.is_some_and(|s| s.resident_bytes > 0.0 && s.start_time_seconds > 1e9),
            "{stat:?}"
        );
    }
}
