//! `lectern-bench`: a load generator for any y-websocket server (Lectern, the reference
//! `@y/websocket-server`, or `@hocuspocus/server` with `--protocol hocuspocus`).
//!
//! # Layout
//!
//! - `wire` — the two dialects, sans-IO: frames out (built with `yrs::sync`), borrowed
//!   events in.
//! - `marker` — the `|c<client>s<seq>|` strings every edit inserts, and the scanner that finds
//!   them in received frames without decoding updates.
//! - `conn` — loopback-only targets (one or several nodes), TCP + WebSocket connect,
//!   opening frames, sync step 2.
//! - `steady` — R rooms × C clients × E edits/s: fan-out latency, throughput, convergence.
//! - `saturate` — steady steps with growing load until delivery lags; the knee.
//! - `storm` — a large document, then K clients joining at once.
//! - `reconverge` — a cluster's nodes cut apart by an outage of the service joining them
//!   (stopped and started by commands given), then the time until every room agrees again.
//! - `procfs` — server and generator CPU/RSS from `/proc`, sampled on a plain thread.
//! - `stats` — percentiles. `report` — the human-readable tables.
//!
//! This file is glue: the command line, the runtime, and printing.

mod conn;
mod marker;
mod procfs;
mod reconverge;
mod report;
mod saturate;
mod stats;
mod steady;
mod storm;
mod wire;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::conn::Nodes;
use crate::wire::Protocol;

/// Load generator for y-websocket servers: fan-out latency, throughput, join storms.
#[derive(Debug, Parser)]
#[command(name = "lectern-bench", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    mode: Mode,
}

/// Options every mode takes.
#[derive(Debug, Args)]
struct Global {
    /// Base WebSocket URL, loopback only; y-websocket documents are `<url>/<doc>` (Lectern:
    /// ws://127.0.0.1:8080/ws, reference server and Hocuspocus: ws://127.0.0.1:PORT).
    /// Repeat it (or give a comma-separated list) for the nodes of a cluster: the clients
    /// of every room are spread over them round robin.
    #[arg(
        long = "url",
        global = true,
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    urls: Vec<String>,
    /// Wire dialect of the server.
    #[arg(long, global = true, value_enum, default_value_t = Protocol::YWebsocket)]
    protocol: Protocol,
    /// Token sent in the Hocuspocus Auth message.
    #[arg(long, global = true, default_value = "bench")]
    token: String,
    /// Server process to read CPU and RSS of (/proc/PID); without it those figures are n/a.
    /// Repeat it (or give a comma-separated list) to count several processes (every node
    /// and the Redis between them): CPU and RSS are then their sums.
    #[arg(long = "server-pid", global = true, value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Print one JSON line to stdout (the table then goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Document name prefix (default: unique per invocation, so runs never share documents).
    #[arg(long, global = true)]
    doc_prefix: Option<String>,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// R rooms x C clients, each making E edits/s for D seconds.
    Steady(SteadyArgs),
    /// Steady steps with growing edit rate (or clients) until delivery lags.
    Saturate(SaturateArgs),
    /// Build a large document, then let K clients join at once.
    JoinStorm(StormArgs),
    /// Cut a cluster's nodes apart with commands that stop and start the service joining
    /// them, under light load; time until every room agrees again.
    Reconverge(ReconvergeArgs),
}

/// Load shape shared by `steady` and `saturate`.
#[derive(Debug, Args)]
struct LoadArgs {
    /// Rooms (documents) [default: steady 1, saturate 4].
    #[arg(short = 'R', long)]
    rooms: Option<u32>,
    /// Clients per room [default: steady 50, saturate 25].
    #[arg(short = 'C', long)]
    clients: Option<u32>,
    /// Seconds of editing before the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Longest wait after the window for late deliveries, seconds.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Also apply every received update to a yrs Doc per client and compare the documents
    /// at the end (costs generator CPU).
    #[arg(long)]
    verify_docs: bool,
}

#[derive(Debug, Args)]
struct SteadyArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Edits per second per client.
    #[arg(short = 'E', long, default_value_t = 5.0)]
    rate: f64,
    /// Measured window, seconds.
    #[arg(short = 'D', long, default_value_t = 10.0)]
    duration: f64,
}

#[derive(Debug, Args)]
struct SaturateArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Edits per second per client in the first step.
    #[arg(short = 'E', long, default_value_t = 2.0)]
    rate: f64,
    /// Measured window of each step, seconds.
    #[arg(short = 'D', long, default_value_t = 5.0)]
    duration: f64,
    /// What grows between steps.
    #[arg(long, value_enum, default_value_t = saturate::Vary::Rate)]
    vary: saturate::Vary,
    /// Growth factor per step.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Most steps to run.
    #[arg(long, default_value_t = 16)]
    max_steps: u32,
    /// A step lags above this fan-out p99, ms.
    #[arg(long, default_value_t = 50.0)]
    p99_limit_ms: f64,
    /// A step lags below this delivered/expected ratio.
    #[arg(long, default_value_t = 0.95)]
    min_ratio: f64,
}

#[derive(Debug, Args)]
struct StormArgs {
    /// Document size, MiB of text.
    #[arg(long, default_value_t = 4.0)]
    size_mb: f64,
    /// Clients joining at once.
    #[arg(short = 'K', long, default_value_t = 150)]
    clients: u32,
    /// Bytes per insert (each insert is one item).
    #[arg(long, default_value_t = 64)]
    chunk_bytes: usize,
    /// Inserts per update the writer sends.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Longest wait for the build and for the storm, seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

#[derive(Debug, Args)]
struct ReconvergeArgs {
    /// Rooms (documents).
    #[arg(short = 'R', long, default_value_t = 200)]
    rooms: u32,
    /// Clients per room.
    #[arg(short = 'C', long, default_value_t = 2)]
    clients: u32,
    /// Edits per second per client, before and during the outage.
    #[arg(short = 'E', long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds of editing before the stop command.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds from the stop command's return to the start command's launch.
    #[arg(long, default_value_t = 5.0)]
    outage: f64,
    /// Shell command that takes the service down and returns once it is down.
    #[arg(long)]
    stop_cmd: String,
    /// Shell command that brings the service back and returns once it answers.
    #[arg(long)]
    start_cmd: String,
    /// Longest either command may take, seconds.
    #[arg(long, default_value_t = 30.0)]
    cmd_timeout: f64,
    /// Longest wait for every room to agree after the start command returned, seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Also apply every received update to a yrs Doc per client and compare the documents
    /// of each room at the end.
    #[arg(long)]
    verify_docs: bool,
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    if !(s.is_finite() && (0.0..=86_400.0).contains(&s)) {
        bail!("{what} must be between 0 and 86400 seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

impl LoadArgs {
    fn params(&self, rooms: u32, clients: u32, rate: f64, duration: f64) -> Result<steady::Params> {
        let duration = secs(duration, "--duration")?;
        if duration < Duration::from_millis(500) {
            bail!("--duration must be at least 0.5 s");
        }
        Ok(steady::Params {
            rooms: self.rooms.unwrap_or(rooms),
            clients: self.clients.unwrap_or(clients),
            rate,
            duration,
            warmup: secs(self.warmup, "--warmup")?,
            drain_timeout: secs(self.drain_timeout, "--drain-timeout")?,
            connect_concurrency: self.connect_concurrency,
            verify_docs: self.verify_docs,
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.global.threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build()?.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    let nodes = Nodes::parse(&g.urls, g.protocol, &g.token)?;
    // Figures are sums over every process given: one unreadable process would make them
    // n/a anyway, so say which.
    for &pid in &g.server_pids {
        if procfs::Proc::Pid(pid).cpu_secs().is_none() {
            eprintln!("warning: /proc/{pid} is not readable; server figures will be n/a");
        }
    }
    let pids = g.server_pids.as_slice();
    let prefix = g.doc_prefix.clone().unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("bench-{t}-{}", std::process::id())
    });
    let protocol = match g.protocol {
        Protocol::YWebsocket => "y-websocket",
        Protocol::Hocuspocus => "hocuspocus",
    };

    let (mode, table, json, converged) = match &cli.mode {
        Mode::Steady(a) => {
            let p = a.load.params(1, 50, a.rate, a.duration)?;
            let o = steady::run(&nodes, pids, &prefix, &p).await?;
            let ok = o.convergence.converged;
            (
                "steady",
                report::steady(&o),
                summary("steady", protocol, g, &o),
                ok,
            )
        }
        Mode::Saturate(a) => {
            if !a.factor.is_finite() || a.factor <= 1.0 {
                bail!("--factor must be > 1");
            }
            let p = saturate::Params {
                first: a.load.params(4, 25, a.rate, a.duration)?,
                vary: a.vary,
                factor: a.factor,
                max_steps: a.max_steps.clamp(1, 100),
                p99_limit_ms: a.p99_limit_ms,
                min_ratio: a.min_ratio,
            };
            let o = saturate::run(&nodes, pids, &prefix, &p).await?;
            // Saturation ends with a lagging step by design; only a missing knee is a failure.
            let ok = o.knee.is_some();
            (
                "saturate",
                report::saturate(&o),
                summary("saturate", protocol, g, &o),
                ok,
            )
        }
        Mode::JoinStorm(a) => {
            if nodes.len() > 1 {
                bail!("join-storm loads one server: give one --url");
            }
            if !(a.size_mb > 0.0 && a.size_mb <= 1024.0) {
                bail!("--size-mb must be in (0, 1024]");
            }
            let p = storm::Params {
                size_mb: a.size_mb,
                clients: a.clients,
                chunk_bytes: a.chunk_bytes,
                batch: a.batch,
                timeout: secs(a.timeout, "--timeout")?,
            };
            let o = storm::run(nodes.first(), pids, &prefix, &p).await?;
            let ok = o.converged;
            (
                "join-storm",
                report::storm(&o),
                summary("join-storm", protocol, g, &o),
                ok,
            )
        }
        Mode::Reconverge(a) => {
            if a.clients < 2 || a.rooms < 1 {
                bail!("reconverge needs at least 1 room of at least 2 clients");
            }
            if !(a.rate > 0.0 && a.rate <= 1000.0) {
                bail!("--rate must be in (0, 1000]");
            }
            let p = reconverge::Params {
                rooms: a.rooms,
                clients: a.clients,
                rate: a.rate,
                warmup: secs(a.warmup, "--warmup")?,
                outage: secs(a.outage, "--outage")?,
                stop_cmd: a.stop_cmd.clone(),
                start_cmd: a.start_cmd.clone(),
                cmd_timeout: secs(a.cmd_timeout, "--cmd-timeout")?,
                timeout: secs(a.timeout, "--timeout")?,
                connect_concurrency: a.connect_concurrency,
                verify_docs: a.verify_docs,
            };
            let o = reconverge::run(&nodes, pids, &prefix, &p).await?;
            let ok = o.convergence.converged;
            (
                "reconverge",
                report::reconverge(&o),
                summary("reconverge", protocol, g, &o),
                ok,
            )
        }
    };
    let table = format!("{}{table}", report::header(mode, protocol, &g.urls));
    if g.json {
        eprint!("{table}");
        println!("{json}");
    } else {
        print!("{table}");
    }
    if !converged {
        bail!("{mode}: not converged (see the table above)");
    }
    Ok(())
}

/// The one-line JSON summary.
fn summary<T: Serialize>(mode: &str, protocol: &str, g: &Global, result: &T) -> String {
    serde_json::json!({
        "mode": mode,
        "protocol": protocol,
        "url": g.urls.join(","),
        "urls": g.urls,
        "server_pids": g.server_pids,
        "result": result,
    })
    .to_string()
}
