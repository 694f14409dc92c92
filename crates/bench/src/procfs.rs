//! Figures from `/proc`: this process's peak resident set (`VmHWM`), any field in KiB of
//! another process's status, such as the service's anonymous resident memory (`RssAnon`:
//! heap and stacks, without the pages of LMDB's file mapping), another process's CPU
//! time, and the system's load average, to tell how busy the machine was while
//! measuring.

use std::time::Duration;

use anyhow::{Context, Result};

/// Clock ticks per second of the times in `/proc/PID/stat` (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick rate).
const USER_HZ: u64 = 100;

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> Result<u64> {
    read_status_kib("/proc/self/status", "VmHWM")
}

/// The field `field` (in kB, such as `RssAnon` or `VmHWM`) of the process `pid`.
pub fn process_status_kib(pid: u32, field: &str) -> Result<u64> {
    read_status_kib(&format!("/proc/{pid}/status"), field)
}

fn read_status_kib(path: &str, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse_status_kib(&status, field).with_context(|| format!("no {field} line in {path}"))
}

/// The CPU time (user and system, of all its threads, those that ended included) that the
/// process `pid` has used so far.
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_cpu_ticks(&stat).with_context(|| format!("no CPU times in {path}"))?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// `utime + stime` (fields 14 and 15, in clock ticks) of a `/proc/PID/stat` text. The
/// command name (field 2) is in parentheses and may hold spaces and parentheses, so the
/// fields are counted from after its last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (the state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The 1, 5 and 15 minute load averages, as `uptime` shows them.
pub fn load_average() -> Result<String> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    Ok(first_three_fields(&loadavg))
}

fn first_three_fields(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value of a `Field:   123 kB` line of a `/proc/PID/status` text.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|number| number.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcairn-service\nVmPeak:\t  9000 kB\nVmHWM:\t   12345 kB\n\
        VmRSS:\t 100 kB\nRssAnon:\t   20480 kB\nRssFile:\t  80 kB\nThreads:\t4\n";

    #[test]
    fn reads_fields_in_kib() {
        assert_eq!(parse_status_kib(STATUS, "VmHWM"), Some(12345));
        assert_eq!(parse_status_kib(STATUS, "RssAnon"), Some(20480));
        assert_eq!(parse_status_kib(STATUS, "VmRSS"), Some(100));
    }

    #[test]
    fn missing_fields_prefixes_and_counts_without_unit_are_none() {
        assert_eq!(parse_status_kib("Name:\tx\n", "VmHWM"), None);
        // `Rss` is a prefix of `RssAnon:` but no field of its own.
        assert_eq!(parse_status_kib(STATUS, "Rss"), None);
        assert_eq!(parse_status_kib(STATUS, "Threads"), None);
    }

    #[test]
    fn load_average_is_the_first_three_fields() {
        assert_eq!(
            first_three_fields("2.17 1.88 1.42 3/245 28925\n"),
            "2.17 1.88 1.42"
        );
    }

    #[test]
    fn cpu_ticks_are_utime_and_stime_after_the_name() {
        let stat = "4242 (cairn sync) (x)) S 1 4242 4242 0 -1 4194560 2375 0 0 0 \
                    731 129 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(860));
        assert_eq!(parse_stat_cpu_ticks("4242 (x) S 1 2"), None);
    }

    #[test]
    fn reads_this_process_and_the_system() {
        assert!(!load_average().unwrap().is_empty());
        assert!(peak_rss_kib().unwrap() > 0);
        assert!(process_status_kib(std::process::id(), "RssAnon").unwrap() > 0);
        process_cpu_time(std::process::id()).unwrap();
    }
}
