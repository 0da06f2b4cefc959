//! `reconverge`: how long the nodes of a cluster take to agree again after the service that
//! joins them (Redis, for Lectern) was down, and whether anything was lost.
//!
//! # How a run goes
//!
//! 1. R rooms × C clients connect and sync, spread over the nodes as in `steady` (with two
//!    nodes and C = 2, every room has one client on each node).
//! 2. Every client edits at E edits/s (light load). After the warm-up, `--stop-cmd` runs: it
//!    takes the service down and returns once it is down. Editing goes on for `--outage`
//!    seconds, while a node cannot pass its clients' edits to the others (each node still
//!    stores and serves them). Then `--start-cmd` runs: it brings the service back and
//!    returns once it answers.
//! 3. When the start command returns, every client makes **one last edit** and stops
//!    editing. From then on nothing new is written, so "every client of the room has seen
//!    every edit of every other client of the room" is a fixed target. To reach it the nodes
//!    must both repair what the outage kept apart (the edits made during it) and carry live
//!    traffic again (the last edits, sent when the service had just come back).
//! 4. The run drains until every room agrees or `--timeout`. A room agrees at the latest
//!    first sighting of any edit by any of its clients (each receiver timestamps sightings as
//!    `steady` does); its **time to reconverge** is that instant minus the instant the start
//!    command was *launched*, so the service's own start-up and the nodes' reconnects count.
//!
//! # Why "all markers seen" means "the documents agree"
//!
//! Every edit inserts a unique marker, and each client's own document holds only its own
//! edits, so an edit depends on nothing but its sender's earlier edits. A client that has
//! seen every marker of every other client therefore holds the whole set of the room's
//! updates, and Yjs documents with the same set of updates are identical. With
//! `--verify-docs` every client also applies what it receives to a second document and the
//! texts of a room are compared at the end. Sightings are exact instants, not polls: the
//! figure's resolution is the generator's receive path.
//!
//! The commands run through `sh -c` with stdout sent to stderr (the JSON line stays
//! clean), each bounded by `--cmd-timeout`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use tokio::process::Command;
use tokio::time::{sleep_until, timeout};

use crate::conn::Nodes;
use crate::stats::{Dist, micros};
use crate::steady::{self, Convergence, Fleet};

/// What one reconverge run does.
#[derive(Debug, Clone)]
pub struct Params {
    pub rooms: u32,
    pub clients: u32,
    /// Edits per second per client (before and during the outage).
    pub rate: f64,
    /// Editing before the stop command.
    pub warmup: Duration,
    /// From the stop command's return to the start command's launch.
    pub outage: Duration,
    /// Takes the service down; returns once it is down.
    pub stop_cmd: String,
    /// Brings the service back; returns once it answers.
    pub start_cmd: String,
    /// Longest either command may take.
    pub cmd_timeout: Duration,
    /// Longest wait for every room to agree after the start command returned.
    pub timeout: Duration,
    pub connect_concurrency: usize,
    pub verify_docs: bool,
}

/// Figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub nodes: u32,
    pub rooms: u32,
    pub clients_per_room: u32,
    pub rate: f64,
    pub warmup_s: f64,
    /// Stop command returned → start command launched.
    pub outage_s: f64,
    pub connect_sync: Dist,
    /// Fan-out latency of edits sent before the outage (the warm-up after its first
    /// second): the cluster worked before it was cut.
    pub fanout_before: Dist,
    /// How long the stop command took.
    pub stop_cmd_s: f64,
    /// How long the start command took (launch → the service answers).
    pub start_cmd_s: f64,
    /// Deliveries that arrived between the stop command's return and the start command's
    /// launch. With one client of each room per node this should be 0: the outage really
    /// cut the nodes apart.
    pub deliveries_during_outage: u64,
    /// Per room: start command launched → the room's clients agree.
    pub reconverge: Dist,
    /// Start command launched → every room agrees, seconds (`None` if some room never did).
    pub all_rooms_s: Option<f64>,
    /// Start command returned (the service answers) → every room agrees, seconds.
    pub all_rooms_after_up_s: Option<f64>,
    /// Rooms whose clients agreed within the timeout.
    pub rooms_reconverged: u32,
    pub convergence: Convergence,
}

/// Runs a command line through `sh -c` within `limit`; fails unless it exits 0.
async fn run_cmd(what: &str, cmd: &str, limit: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .kill_on_drop(true)
        .status();
    match timeout(limit, status).await {
        Ok(Ok(s)) if s.success() => Ok(t0.elapsed()),
        Ok(Ok(s)) => bail!("{what} command exited with {s}"),
        Ok(Err(e)) => Err(e).with_context(|| format!("running the {what} command")),
        Err(_) => bail!("{what} command took longer than {limit:?}"),
    }
}

pub async fn run(nodes: &Nodes, server_pids: &[u32], prefix: &str, p: &Params) -> Result<Outcome> {
    // The fleet's log sizes and deadlines come from its steady parameters: the "duration"
    // covers the outage and both commands, with room to spare.
    let fleet_params = steady::Params {
        rooms: p.rooms,
        clients: p.clients,
        rate: p.rate,
        duration: p.outage + p.cmd_timeout * 2 + Duration::from_secs(5),
        warmup: p.warmup,
        drain_timeout: p.timeout,
        connect_concurrency: p.connect_concurrency,
        verify_docs: p.verify_docs,
    };
    let fleet = Fleet::launch(nodes, server_pids, prefix, &fleet_params).await?;
    let go = Instant::now() + Duration::from_millis(50);
    let stop_at = go + p.warmup;
    let window_start = go + p.warmup.min(Duration::from_secs(1));
    // Writers stop at the last edit, long before this.
    let edit_end = go + p.warmup + fleet_params.duration;
    eprintln!(
        "reconverge: all synced; {:.1} s of edits, then stop, {:.1} s outage, start",
        p.warmup.as_secs_f64(),
        p.outage.as_secs_f64()
    );
    fleet.go(go, window_start, stop_at, edit_end);
    sleep_until(stop_at.into()).await;

    let timeline = async {
        let stop_took = run_cmd("stop", &p.stop_cmd, p.cmd_timeout).await?;
        let down = Instant::now();
        let seen_down = fleet.seen();
        eprintln!("reconverge: service down ({stop_took:?}); outage");
        sleep_until((down + p.outage).into()).await;
        let seen_before_start = fleet.seen();
        let launched = Instant::now();
        let start_took = run_cmd("start", &p.start_cmd, p.cmd_timeout).await?;
        let up = Instant::now();
        fleet.final_edit();
        eprintln!(
            "reconverge: service up ({start_took:?}); last edits sent, waiting for agreement"
        );
        anyhow::Ok(Timeline {
            stop_took,
            start_took,
            down,
            launched,
            up,
            during_outage: seen_before_start - seen_down,
        })
    }
    .await;
    let timeline = match timeline {
        Ok(t) => t,
        Err(e) => {
            // Close every client before giving up, so nothing outlives the run.
            let _ = fleet.stop().await;
            return Err(e);
        }
    };
    let drained = fleet.drain(timeline.up + p.timeout).await;
    let launched_ns = fleet.ns(timeline.launched);
    let up_ns = fleet.ns(timeline.up);
    let mut finished = fleet.stop().await?;

    let convergence =
        steady::check_convergence(&finished.sent, &finished.outcomes, &fleet_params, drained);
    // Per room: the latest first sighting among its clients, if the room agrees.
    let agreed_at: Vec<Option<u64>> = finished
        .outcomes
        .chunks(p.clients as usize)
        .zip(&convergence.room_ok)
        .map(|(group, &ok)| ok.then(|| group.iter().map(|o| o.last_new_ns).max().unwrap_or(0)))
        .collect();
    let mut per_room: Vec<u32> = agreed_at
        .iter()
        .flatten()
        .map(|&at| micros(Duration::from_nanos(at.saturating_sub(launched_ns))))
        .collect();
    let all_agreed = agreed_at.iter().all(Option::is_some);
    let last = agreed_at.iter().flatten().copied().max();
    let secs_from = |from: u64| {
        last.filter(|_| all_agreed)
            .map(|at| at.saturating_sub(from) as f64 / 1e9)
    };
    let (mut same, mut cross) = steady::take_latencies(&mut finished.outcomes);
    same.append(&mut cross);
    Ok(Outcome {
        nodes: nodes.len(),
        rooms: p.rooms,
        clients_per_room: p.clients,
        rate: p.rate,
        warmup_s: p.warmup.as_secs_f64(),
        outage_s: timeline
            .launched
            .duration_since(timeline.down)
            .as_secs_f64(),
        connect_sync: Dist::from_micros(&mut finished.connect_us),
        fanout_before: Dist::from_micros(&mut same),
        stop_cmd_s: timeline.stop_took.as_secs_f64(),
        start_cmd_s: timeline.start_took.as_secs_f64(),
        deliveries_during_outage: timeline.during_outage,
        rooms_reconverged: per_room.len() as u32,
        reconverge: Dist::from_micros(&mut per_room),
        all_rooms_s: secs_from(launched_ns),
        all_rooms_after_up_s: secs_from(up_ns),
        convergence,
    })
}

/// When the outage happened.
#[derive(Debug)]
struct Timeline {
    stop_took: Duration,
    start_took: Duration,
    /// The stop command returned.
    down: Instant,
    /// The start command was launched.
    launched: Instant,
    /// The start command returned.
    up: Instant,
    /// Deliveries between `down` and `launched`.
    during_outage: u64,
}
