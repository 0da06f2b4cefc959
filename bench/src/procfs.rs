//! Server (and generator) resource use from `/proc`.
//!
//! CPU is `utime + stime` of `/proc/<pid>/stat`, which covers every thread of the process;
//! memory is `VmRSS` / `VmHWM` of `/proc/<pid>/status`. A [`Sampler`] thread reads both every
//! few milliseconds into a time series, so figures can be cut to any window afterwards and
//! the sampling never waits behind the tokio workers that drive the load.
//!
//! "The server" may be several processes (the nodes of a cluster and the Redis between
//! them): its CPU and RSS are the sums over all of them, and a sum is `None` unless every
//! process could be read, so a process that died never makes a figure look smaller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` times. `USER_HZ` is part of the Linux
/// user-space ABI and 100 on every mainstream architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// The longest a sampler runs (a bound on its loop): one day at the sampling interval.
const MAX_SAMPLER_RUN: Duration = Duration::from_secs(24 * 3600);

/// Which process to read: a pid, or the generator itself.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    Pid(u32),
    Myself,
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
            Proc::Myself => format!("/proc/self/{file}"),
        }
    }

    /// User + system CPU time consumed so far, in seconds.
    pub fn cpu_secs(self) -> Option<f64> {
        let stat = std::fs::read_to_string(self.path("stat")).ok()?;
        parse_cpu_ticks(&stat).map(|t| t as f64 / TICKS_PER_SEC)
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn status_kb(self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(self.path("status")).ok()?;
        parse_status_kb(&status, field)
    }

    pub fn rss_kb(self) -> Option<u64> {
        self.status_kb("VmRSS")
    }
}

/// Sum of one reading over several server processes: `None` without processes or when one
/// of them cannot be read.
fn sum_over<T: std::iter::Sum<T>>(pids: &[u32], read: impl Fn(Proc) -> Option<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| read(Proc::Pid(pid))).sum()
}

/// Summed `VmRSS` of the server processes, KiB.
pub fn servers_rss_kb(pids: &[u32]) -> Option<u64> {
    sum_over(pids, Proc::rss_kb)
}

/// Summed `VmHWM` (peak RSS) of the server processes, KiB.
pub fn servers_hwm_kb(pids: &[u32]) -> Option<u64> {
    sum_over(pids, |p| p.status_kb("VmHWM"))
}

/// `utime + stime` from the text of `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// One reading of the sampled processes.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Server resident set, summed over the server processes, KiB (`None` without a server
    /// pid or once one is gone).
    pub server_rss_kb: Option<u64>,
    /// CPU seconds so far of each server process, in the order of the pids.
    pub server_cpu_each: Vec<Option<f64>>,
    /// Generator CPU seconds so far.
    pub own_cpu: Option<f64>,
}

impl Sample {
    pub fn take(servers: &[u32]) -> Sample {
        Sample {
            at: Instant::now(),
            server_rss_kb: servers_rss_kb(servers),
            server_cpu_each: servers
                .iter()
                .map(|&pid| Proc::Pid(pid).cpu_secs())
                .collect(),
            own_cpu: Proc::Myself.cpu_secs(),
        }
    }

    /// CPU seconds so far of all server processes together.
    pub fn server_cpu(&self) -> Option<f64> {
        if self.server_cpu_each.is_empty() {
            return None;
        }
        self.server_cpu_each.iter().copied().sum()
    }
}

/// A thread sampling the server and the generator until [`Sampler::finish`].
#[derive(Debug)]
pub struct Sampler {
    /// Set to stop the thread.
    stop: Arc<AtomicBool>,
    /// The thread; returns the series.
    handle: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(servers: Vec<u32>, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let max = (MAX_SAMPLER_RUN.as_secs_f64() / every.as_secs_f64()) as usize;
        let handle = std::thread::spawn(move || {
            let mut series = Vec::with_capacity(4096);
            let mut next = Instant::now();
            for _ in 0..max {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                series.push(Sample::take(&servers));
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            series
        });
        Sampler { stop, handle }
    }

    /// Stops the thread and returns the series, oldest first.
    pub fn finish(self) -> Series {
        self.stop.store(true, Ordering::Relaxed);
        Series(self.handle.join().unwrap_or_default())
    }
}

/// A finished time series.
#[derive(Debug, Default)]
pub struct Series(pub Vec<Sample>);

impl Series {
    fn within(&self, from: Instant, to: Instant) -> impl Iterator<Item = &Sample> {
        self.0.iter().filter(move |s| s.at >= from && s.at <= to)
    }

    /// Largest server RSS sampled in `[from, to]`.
    pub fn peak_rss_kb(&self, from: Instant, to: Instant) -> Option<u64> {
        self.within(from, to).filter_map(|s| s.server_rss_kb).max()
    }

    /// The samples enclosing `[from, to]`: the last one at or before `from` and the first
    /// one at or after `to` (or the nearest ones the series has).
    fn enclosing(&self, from: Instant, to: Instant) -> Option<(&Sample, &Sample)> {
        let a = self
            .0
            .iter()
            .rev()
            .find(|s| s.at <= from)
            .or_else(|| self.0.first())?;
        let b = self
            .0
            .iter()
            .find(|s| s.at >= to)
            .or_else(|| self.0.last())?;
        (b.at > a.at).then_some((a, b))
    }

    /// Average CPU cores the server and the generator used over `[from, to]` (widened to the
    /// enclosing samples, so the resolution is the sampling interval plus the 10 ms tick of
    /// `/proc/<pid>/stat`).
    pub fn cores(&self, from: Instant, to: Instant) -> (Option<f64>, Option<f64>) {
        let Some((a, b)) = self.enclosing(from, to) else {
            return (None, None);
        };
        let wall = b.at.duration_since(a.at).as_secs_f64();
        let rate = |x: Option<f64>, y: Option<f64>| Some((y? - x?).max(0.0) / wall);
        (
            rate(a.server_cpu(), b.server_cpu()),
            rate(a.own_cpu, b.own_cpu),
        )
    }

    /// Average CPU cores of each server process over `[from, to]`, in the order of the pids.
    pub fn cores_each(&self, from: Instant, to: Instant) -> Vec<Option<f64>> {
        let Some((a, b)) = self.enclosing(from, to) else {
            return Vec::new();
        };
        let wall = b.at.duration_since(a.at).as_secs_f64();
        a.server_cpu_each
            .iter()
            .zip(&b.server_cpu_each)
            .map(|(&x, &y)| Some((y? - x?).max(0.0) / wall))
            .collect()
    }

    /// CPU seconds the server consumed over `[from, to]` (enclosing samples).
    pub fn server_cpu_secs(&self, from: Instant, to: Instant) -> Option<f64> {
        let (a, b) = self.enclosing(from, to)?;
        Some((b.server_cpu()? - a.server_cpu()?).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_command_name() {
        let stat = "4242 (node ) (x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 11 0";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tnode\nVmHWM:\t  90000 kB\nVmRSS:\t   81234 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(81234));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(90000));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn cores_over_a_window_use_the_enclosing_samples() {
        let t0 = Instant::now();
        // Two server processes; the second always used a quarter of the first's CPU.
        let at = |ms: u64, cpu: f64| Sample {
            at: t0 + Duration::from_millis(ms),
            server_rss_kb: Some(1000 + ms),
            server_cpu_each: vec![Some(cpu * 0.8), Some(cpu * 0.2)],
            own_cpu: Some(cpu / 2.0),
        };
        let series = Series(vec![at(0, 1.0), at(500, 1.2), at(1000, 1.5), at(1500, 2.0)]);
        let ms = |v| t0 + Duration::from_millis(v);
        let (server, own) = series.cores(ms(100), ms(900));
        assert!((server.expect("server") - 0.5).abs() < 1e-9);
        assert!((own.expect("own") - 0.25).abs() < 1e-9);
        let each = series.cores_each(ms(100), ms(900));
        assert_eq!(each.len(), 2);
        assert!((each[0].expect("first") - 0.4).abs() < 1e-9);
        assert!((each[1].expect("second") - 0.1).abs() < 1e-9);
        let cpu = series.server_cpu_secs(ms(500), ms(1000)).expect("cpu");
        assert!((cpu - 0.3).abs() < 1e-9);
        assert_eq!(series.peak_rss_kb(ms(0), ms(1000)), Some(2000));
        assert_eq!(Series::default().cores(ms(0), ms(1)), (None, None));
    }

    #[test]
    fn own_process_is_readable() {
        assert!(Proc::Myself.cpu_secs().is_some());
        assert!(Proc::Myself.rss_kb().is_some_and(|kb| kb > 0));
    }

    #[test]
    fn sums_need_every_process() {
        let me = std::process::id();
        let one = servers_rss_kb(&[me]).expect("own rss");
        assert!(servers_rss_kb(&[me, me]).expect("twice") >= one);
        assert_eq!(servers_rss_kb(&[]), None);
        // No process has pid 0 in /proc: one unreadable process makes the sum unknown.
        assert_eq!(servers_rss_kb(&[me, 0]), None);
        let sample = Sample::take(&[me, 0]);
        assert_eq!(sample.server_cpu(), None);
        assert_eq!(Sample::take(&[]).server_cpu(), None);
        assert!(Sample::take(&[me]).server_cpu().is_some());
    }
}
