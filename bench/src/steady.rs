//! `steady`: R rooms × C clients, each client making E edits per second; fan-out latency,
//! delivered updates per second, server CPU and memory, and a convergence check.
//!
//! # How a run goes
//!
//! 1. Every client task connects (at most `connect_concurrency` at a time) and waits for
//!    sync step 2; that span is its *connect+sync* time. The run aborts if any client fails.
//! 2. The main task publishes a [`Schedule`]: warm-up, then the measured window. Each
//!    client's writer ticks E times a second (phase-shifted per client so edits do not arrive
//!    in lockstep) and appends a marker (`crate::marker`) to a `Y.Text` of its own `Doc`,
//!    storing the send instant in a shared per-client log just before the frame is written.
//! 3. Each client's reader scans received update payloads for markers and timestamps the
//!    first sighting of each (a per-sender bitset drops duplicates). Its own markers, echoed
//!    by servers that relay an update back to its sender, are counted apart and never as a
//!    delivery. A delivery whose edit was *sent* inside the window gives a latency sample; a
//!    delivery that *arrives* inside the window counts towards delivered updates/s.
//! 4. After the window, the run drains until every client saw every edit of its room (or the
//!    drain timeout), then stops all clients and checks convergence per (receiver, sender).
//!
//! With several nodes (`--url` given more than once) the clients of every room are spread
//! over the nodes round robin (`crate::conn::node_of_client`), so a room's edits cross from
//! node to node; latency is then also reported apart for receivers on the sender's node and
//! on another node.
//!
//! The connected clients of a run form a [`Fleet`], which `crate::reconverge` drives
//! through an outage of a shared dependency instead of a fixed window.
//!
//! Reader and writer of a client are two futures joined in one task: they share the socket
//! through `split` without a channel, and a writer blocked on a full socket never stops its
//! reader. The receive path does not decode updates and does not allocate per message beyond
//! what tungstenite does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval_at, sleep, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode as _;
use yrs::{Doc, GetString as _, ReadTxn as _, StateVector, Text as _, Transact as _, Update};

use crate::conn::{Nodes, SYNC_TIMEOUT, Target, Ws, node_of_client, open_and_sync};
use crate::marker;
use crate::procfs::{Sampler, Series, servers_rss_kb};
use crate::stats::{Dist, micros};
use crate::wire::{Incoming, Wire};

/// Name of the `Y.Text` every client appends its markers to.
const TEXT_NAME: &str = "bench";

/// How often the sampler thread reads `/proc`.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// What one steady run does.
#[derive(Debug, Clone)]
pub struct Params {
    /// Number of rooms (documents).
    pub rooms: u32,
    /// Clients per room.
    pub clients: u32,
    /// Edits per second per client.
    pub rate: f64,
    /// Length of the measured window.
    pub duration: Duration,
    /// Editing before the window (not measured).
    pub warmup: Duration,
    /// Longest wait after the window for late deliveries.
    pub drain_timeout: Duration,
    /// Clients connecting at the same time.
    pub connect_concurrency: usize,
    /// Also apply every received update to a `Doc` per client and compare the documents.
    pub verify_docs: bool,
}

/// Figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub rooms: u32,
    pub clients_per_room: u32,
    /// Target edits per second per client.
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// WebSocket connect until sync step 2 received, per client.
    pub connect_sync: Dist,
    /// Number of server nodes the clients were spread over.
    pub nodes: u32,
    /// Edit sent at one client until first seen at another, per (edit, receiver), for edits
    /// sent inside the window.
    pub fanout: Dist,
    /// With several nodes: `fanout` restricted to receivers on the sender's node.
    pub fanout_same_node: Option<Dist>,
    /// With several nodes: `fanout` restricted to receivers on another node than the
    /// sender's (the edit crossed from node to node).
    pub fanout_cross_node: Option<Dist>,
    /// Edits sent inside the window, all clients.
    pub edits_in_window: u64,
    /// Achieved edits per second per client inside the window.
    pub edit_rate_achieved: f64,
    /// Deliveries (first sightings at a receiver other than the sender) arriving inside the
    /// window, per second.
    pub delivered_per_sec: f64,
    /// Deliveries the edits sent inside the window call for, per second.
    pub expected_per_sec: f64,
    /// `delivered_per_sec / expected_per_sec`.
    pub delivery_ratio: Option<f64>,
    /// Server process figures (`None` without `--server-pid`).
    pub server: ServerFigures,
    /// CPU cores the generator itself used inside the window.
    pub generator_cores: Option<f64>,
    /// How late a 5 ms timer task of the generator woke up inside the window: when this is
    /// small while fan-out latency is large, the delay is the server's, not the generator's.
    pub generator_lag: Dist,
    pub convergence: Convergence,
}

/// Server process figures from `/proc/<pid>`, summed over every server process given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerFigures {
    /// The server processes (`--server-pid`), in the order given.
    pub pids: Vec<u32>,
    /// Average CPU cores used inside the window, all server processes together.
    pub cores: Option<f64>,
    /// Average CPU cores of each server process inside the window, in the order of `pids`.
    pub cores_each: Vec<Option<f64>>,
    /// CPU seconds used inside the window.
    pub cpu_s: Option<f64>,
    /// Deliveries per second divided by cores: deliveries per server core-second.
    pub deliveries_per_core_s: Option<f64>,
    /// VmRSS before any client connected.
    pub rss_baseline_kb: Option<u64>,
    /// VmRSS once every client had synced.
    pub rss_after_connect_kb: Option<u64>,
    /// Largest VmRSS sampled during the run.
    pub rss_peak_kb: Option<u64>,
    /// VmRSS at the end of the drain, clients still connected.
    pub rss_end_kb: Option<u64>,
    /// VmRSS half a second after every client closed.
    pub rss_after_close_kb: Option<u64>,
    /// `(rss_after_connect - rss_baseline) / rooms`.
    pub rss_per_room_kb: Option<f64>,
}

/// Did every client see every edit of its room?
#[derive(Debug, Clone, Default, Serialize)]
pub struct Convergence {
    pub converged: bool,
    /// Edits sent during the whole run (warm-up included).
    pub edits_total: u64,
    pub deliveries_expected: u64,
    pub deliveries_seen: u64,
    pub deliveries_missing: u64,
    /// Rooms where some client missed some edit (or, with `--verify-docs`, documents differ).
    pub rooms_failed: u32,
    /// Per room: whether every client saw every edit of the room (and, with
    /// `--verify-docs`, the documents agree). Not in the JSON (one entry per room).
    #[serde(skip)]
    pub room_ok: Vec<bool>,
    /// Own edits echoed back by the server (not deliveries).
    pub echoes: u64,
    /// Markers that belong to no client of the receiver's room (should be 0).
    pub foreign_markers: u64,
    /// Whether the drain ended because everything arrived (not by timeout).
    pub drained: bool,
    /// With `--verify-docs`: every document of a room has the same text with every marker.
    pub docs_identical: Option<bool>,
    /// First few client errors.
    pub errors: Vec<String>,
}

/// Where a run is; published by the main task over a `watch` channel.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Waiting,
    Go(Schedule),
    /// Every writer makes one last edit now and stops editing.
    Final,
    Stop,
}

/// When editing starts and ends, and where the measured window lies.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    go: Instant,
    /// Writers make no edit at or after this instant.
    edit_end: Instant,
    /// Measured window in nanoseconds since the run's epoch.
    start_ns: u64,
    end_ns: u64,
}

/// One sender's log of send instants, read by every receiver of its room.
#[derive(Debug)]
struct SenderLog {
    /// Nanoseconds since the epoch + 1 at which edit `seq` was written (0 = not sent).
    sent_at: Box<[AtomicU64]>,
    /// Edits written successfully.
    sent: AtomicU32,
}

/// State shared by every client task of a run.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    clients_per_room: u32,
    /// Server nodes the clients are spread over.
    nodes: u32,
    /// Upper bound on edits per client (size of every log).
    cap: u32,
    logs: Vec<SenderLog>,
    /// Deliveries seen so far, all receivers.
    seen: AtomicU64,
    /// Writers that finished editing.
    writers_done: AtomicU32,
}

impl Shared {
    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Deliveries all edits sent so far call for.
    fn expected(&self) -> u64 {
        let fan = u64::from(self.clients_per_room - 1);
        self.logs
            .iter()
            .map(|l| u64::from(l.sent.load(Ordering::Acquire)) * fan)
            .sum()
    }
}

/// What a client task hands back.
#[derive(Debug, Default)]
pub struct ClientOutcome {
    /// Fan-out latency samples from senders on this client's node, µs.
    latencies: Vec<u32>,
    /// Fan-out latency samples from senders on other nodes, µs.
    latencies_cross: Vec<u32>,
    /// Nanoseconds since the run's epoch at which this client last saw an edit for the
    /// first time (0: never).
    pub last_new_ns: u64,
    delivered_in_window: u64,
    /// Distinct edits seen from each client of the room (index = client in room).
    seen_from: Vec<u32>,
    echoes: u64,
    foreign: u64,
    error: Option<String>,
    /// With `--verify-docs`: the text of the client's merged document.
    final_text: Option<String>,
}

/// Every client of a run, connected and synced, waiting for [`Fleet::go`].
#[derive(Debug)]
pub struct Fleet {
    shared: Arc<Shared>,
    /// Clients in all.
    n: u32,
    tasks: Vec<JoinHandle<ClientOutcome>>,
    phase: watch::Sender<Phase>,
    sampler: Sampler,
    server_pids: Vec<u32>,
    /// Connect+sync time of every client, µs.
    connect_us: Vec<u32>,
    rss_baseline: Option<u64>,
    rss_after_connect: Option<u64>,
}

/// What a stopped fleet leaves behind.
#[derive(Debug)]
pub struct Finished {
    /// One per client, in global client order (room by room).
    pub outcomes: Vec<ClientOutcome>,
    /// Edits each client sent over the whole run, in the same order.
    pub sent: Vec<u64>,
    /// Connect+sync time of every client, µs.
    pub connect_us: Vec<u32>,
    pub series: Series,
    /// Server RSS at the end of the drain, clients still connected.
    pub rss_end: Option<u64>,
    /// Server RSS half a second after every client closed.
    pub rss_after_close: Option<u64>,
}

impl Fleet {
    /// Connects and syncs every client of `p` (rooms spread over `nodes`), with the sampler
    /// already watching `server_pids`. Fails if some client cannot connect and sync.
    pub async fn launch(
        nodes: &Nodes,
        server_pids: &[u32],
        prefix: &str,
        p: &Params,
    ) -> Result<Fleet> {
        ensure!(p.clients >= 2, "a room needs at least 2 clients");
        ensure!(p.rooms >= 1, "at least one room");
        ensure!(
            p.rate > 0.0 && p.rate <= 10_000.0,
            "--rate must be in (0, 10000]"
        );
        let n = p
            .rooms
            .checked_mul(p.clients)
            .filter(|&n| n <= 1_000_000)
            .context("too many clients")?;
        let cap = (p.rate * (p.warmup + p.duration).as_secs_f64()).ceil() as u32 + 4;
        let epoch = Instant::now();
        let shared = Arc::new(Shared {
            epoch,
            clients_per_room: p.clients,
            nodes: nodes.len(),
            cap,
            logs: (0..n)
                .map(|_| SenderLog {
                    sent_at: (0..cap).map(|_| AtomicU64::new(0)).collect(),
                    sent: AtomicU32::new(0),
                })
                .collect(),
            seen: AtomicU64::new(0),
            writers_done: AtomicU32::new(0),
        });

        let sampler = Sampler::start(server_pids.to_vec(), SAMPLE_EVERY);
        let rss_baseline = servers_rss_kb(server_pids);

        let connect_deadline = Instant::now() + SYNC_TIMEOUT + Duration::from_millis(20) * n;
        let hard_deadline =
            connect_deadline + p.warmup + p.duration + p.drain_timeout + Duration::from_secs(30);
        let (phase_tx, phase_rx) = watch::channel(Phase::Waiting);
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(p.connect_concurrency.max(1)));
        eprintln!(
            "steady: {} rooms x {} clients over {} node(s), {} edits/s each; connecting {n} clients",
            p.rooms,
            p.clients,
            nodes.len(),
            p.rate
        );
        let mut tasks = Vec::with_capacity(n as usize);
        for id in 0..n {
            let target = nodes.of_client(id, p.clients);
            let task = ClientTask {
                id,
                wire: target.wire(&format!("{prefix}-r{}", id / p.clients)),
                target: target.clone(),
                shared: shared.clone(),
                phase: phase_rx.clone(),
                ready: ready_tx.clone(),
                permits: permits.clone(),
                rate: p.rate,
                verify: p.verify_docs,
                hard_deadline,
            };
            tasks.push(tokio::spawn(task.run()));
        }
        drop(ready_tx);

        let mut connect_us = Vec::with_capacity(n as usize);
        let mut connect_errors = Vec::new();
        while connect_us.len() + connect_errors.len() < n as usize {
            match timeout_at(connect_deadline.into(), ready_rx.recv()).await {
                Ok(Some(Ok(took))) => connect_us.push(micros(took)),
                Ok(Some(Err(e))) => connect_errors.push(e),
                Ok(None) => break,
                Err(_) => {
                    connect_errors.push("connect phase timed out".to_owned());
                    break;
                }
            }
        }
        if !connect_errors.is_empty() {
            phase_tx.send_replace(Phase::Stop);
            for t in tasks {
                let _ = t.await;
            }
            sampler.finish();
            bail!(
                "{} of {n} clients failed to connect and sync; first: {}",
                connect_errors.len(),
                connect_errors[0]
            );
        }
        // Let the server settle so its RSS reflects every room and connection.
        sleep(Duration::from_millis(200)).await;
        let rss_after_connect = servers_rss_kb(server_pids);
        Ok(Fleet {
            shared,
            n,
            tasks,
            phase: phase_tx,
            sampler,
            server_pids: server_pids.to_vec(),
            connect_us,
            rss_baseline,
            rss_after_connect,
        })
    }

    /// Lets every writer edit from `go` until `edit_end`; latency and deliveries are
    /// measured for the window `[start, end)`.
    pub fn go(&self, go: Instant, start: Instant, end: Instant, edit_end: Instant) {
        let sched = Schedule {
            go,
            edit_end,
            start_ns: self.shared.ns(start),
            end_ns: self.shared.ns(end),
        };
        self.phase.send_replace(Phase::Go(sched));
    }

    /// Tells every writer to make one last edit now and stop editing.
    pub fn final_edit(&self) {
        self.phase.send_replace(Phase::Final);
    }

    /// Deliveries seen so far, all receivers.
    pub fn seen(&self) -> u64 {
        self.shared.seen.load(Ordering::Acquire)
    }

    /// The run's epoch as [`ClientOutcome::last_new_ns`] counts from it.
    pub fn ns(&self, at: Instant) -> u64 {
        self.shared.ns(at)
    }

    /// Waits until every writer is done and every client saw every edit of its room, or
    /// `deadline`. True if everything arrived.
    pub async fn drain(&self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if self.shared.writers_done.load(Ordering::Acquire) == self.n
                && self.seen() >= self.shared.expected()
            {
                return true;
            }
            sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Closes every client and collects what each saw.
    pub async fn stop(self) -> Result<Finished> {
        let rss_end = servers_rss_kb(&self.server_pids);
        self.phase.send_replace(Phase::Stop);
        let mut outcomes = Vec::with_capacity(self.n as usize);
        for t in self.tasks {
            outcomes.push(t.await.context("client task panicked")?);
        }
        sleep(Duration::from_millis(500)).await;
        let rss_after_close = servers_rss_kb(&self.server_pids);
        let sent = self
            .shared
            .logs
            .iter()
            .map(|l| u64::from(l.sent.load(Ordering::Acquire)))
            .collect();
        Ok(Finished {
            outcomes,
            sent,
            connect_us: self.connect_us,
            series: self.sampler.finish(),
            rss_end,
            rss_after_close,
        })
    }
}

/// Runs one steady load and returns its figures. Fails if clients cannot connect; a run that
/// does not converge is a successful run with `convergence.converged == false`.
pub async fn run(nodes: &Nodes, server_pids: &[u32], prefix: &str, p: &Params) -> Result<Outcome> {
    let fleet = Fleet::launch(nodes, server_pids, prefix, p).await?;
    let go = Instant::now() + Duration::from_millis(50);
    let window_start = go + p.warmup;
    let window_end = window_start + p.duration;
    eprintln!(
        "steady: all synced; {:.1} s warm-up, {:.1} s measured",
        p.warmup.as_secs_f64(),
        p.duration.as_secs_f64()
    );
    fleet.go(go, window_start, window_end, window_end);
    let lag = tokio::spawn(scheduler_lag(window_start, window_end));
    sleep_until(window_end.into()).await;
    let drained = fleet.drain(window_end + p.drain_timeout).await;
    let mut lag = lag.await.unwrap_or_default();
    let shared = fleet.shared.clone();
    let (rss_baseline, rss_after_connect) = (fleet.rss_baseline, fleet.rss_after_connect);
    let epoch = shared.epoch;
    let Finished {
        mut outcomes,
        sent,
        mut connect_us,
        series,
        rss_end,
        rss_after_close,
    } = fleet.stop().await?;

    // Figures.
    let n = p.rooms * p.clients;
    let duration_s = p.duration.as_secs_f64();
    let fan = u64::from(p.clients - 1);
    let (start_ns, end_ns) = (shared.ns(window_start), shared.ns(window_end));
    let edits_in_window: u64 = shared
        .logs
        .iter()
        .map(|log| {
            let sent = log.sent.load(Ordering::Acquire) as usize;
            log.sent_at[..sent]
                .iter()
                .filter(|t| {
                    let t = t.load(Ordering::Acquire).saturating_sub(1);
                    t >= start_ns && t < end_ns
                })
                .count() as u64
        })
        .sum();
    let delivered: u64 = outcomes.iter().map(|o| o.delivered_in_window).sum();
    let delivered_per_sec = delivered as f64 / duration_s;
    let expected_per_sec = (edits_in_window * fan) as f64 / duration_s;
    let (mut same, mut cross) = take_latencies(&mut outcomes);
    let mut all: Vec<u32> = same.iter().chain(&cross).copied().collect();
    let several = shared.nodes > 1;
    let (server_cores, generator_cores) = series.cores(window_start, window_end);
    let rss_per_room_kb = match (rss_after_connect, rss_baseline) {
        (Some(a), Some(b)) => Some((a as f64 - b as f64) / f64::from(p.rooms)),
        _ => None,
    };
    let server = ServerFigures {
        pids: server_pids.to_vec(),
        cores: server_cores,
        cores_each: series.cores_each(window_start, window_end),
        cpu_s: series.server_cpu_secs(window_start, window_end),
        deliveries_per_core_s: server_cores
            .filter(|&c| c > 0.0)
            .map(|c| delivered_per_sec / c),
        rss_baseline_kb: rss_baseline,
        rss_after_connect_kb: rss_after_connect,
        rss_peak_kb: series.peak_rss_kb(epoch, Instant::now()),
        rss_end_kb: rss_end,
        rss_after_close_kb: rss_after_close,
        rss_per_room_kb,
    };
    let convergence = check_convergence(&sent, &outcomes, p, drained);
    Ok(Outcome {
        rooms: p.rooms,
        clients_per_room: p.clients,
        rate: p.rate,
        duration_s,
        warmup_s: p.warmup.as_secs_f64(),
        connect_sync: Dist::from_micros(&mut connect_us),
        nodes: shared.nodes,
        fanout: Dist::from_micros(&mut all),
        fanout_same_node: several.then(|| Dist::from_micros(&mut same)),
        fanout_cross_node: several.then(|| Dist::from_micros(&mut cross)),
        edits_in_window,
        edit_rate_achieved: edits_in_window as f64 / (f64::from(n) * duration_s),
        delivered_per_sec,
        expected_per_sec,
        delivery_ratio: (expected_per_sec > 0.0).then(|| delivered_per_sec / expected_per_sec),
        server,
        generator_cores,
        generator_lag: Dist::from_micros(&mut lag),
        convergence,
    })
}

/// Takes every client's fan-out latency samples, µs: (receiver on the sender's node,
/// receiver on another node).
pub fn take_latencies(outcomes: &mut [ClientOutcome]) -> (Vec<u32>, Vec<u32>) {
    let mut same = Vec::with_capacity(outcomes.iter().map(|o| o.latencies.len()).sum());
    let mut cross = Vec::with_capacity(outcomes.iter().map(|o| o.latencies_cross.len()).sum());
    for o in outcomes {
        same.append(&mut o.latencies);
        cross.append(&mut o.latencies_cross);
    }
    (same, cross)
}

/// Did every client see every edit of its room? `sent` and `outcomes` are per client in
/// global client order.
pub fn check_convergence(
    sent: &[u64],
    outcomes: &[ClientOutcome],
    p: &Params,
    drained: bool,
) -> Convergence {
    let c = p.clients as usize;
    let mut conv = Convergence {
        drained,
        ..Convergence::default()
    };
    conv.edits_total = sent.iter().sum();
    let mut docs_identical = p.verify_docs.then_some(true);
    for (room, group) in outcomes.chunks(c).enumerate() {
        let base = room * c;
        let mut room_ok = true;
        for (me, o) in group.iter().enumerate() {
            if let Some(e) = &o.error {
                room_ok = false;
                if conv.errors.len() < 5 {
                    conv.errors.push(e.clone());
                }
            }
            conv.echoes += o.echoes;
            conv.foreign_markers += o.foreign;
            for (s, &seen) in o.seen_from.iter().enumerate() {
                if s == me {
                    continue;
                }
                let want = sent[base + s];
                conv.deliveries_expected += want;
                conv.deliveries_seen += u64::from(seen);
                if u64::from(seen) < want {
                    room_ok = false;
                    conv.deliveries_missing += want - u64::from(seen);
                }
            }
        }
        if p.verify_docs {
            let room_edits: u64 = sent[base..base + group.len()].iter().sum();
            let first = group.first().and_then(|o| o.final_text.as_deref());
            let same = group.iter().all(|o| o.final_text.as_deref() == first);
            let mut markers = 0u64;
            if let Some(text) = first {
                marker::scan(text.as_bytes(), |_, _| markers += 1);
            }
            if !same || markers != room_edits {
                room_ok = false;
                docs_identical = Some(false);
            }
        }
        if !room_ok {
            conv.rooms_failed += 1;
        }
        conv.room_ok.push(room_ok);
    }
    conv.docs_identical = docs_identical;
    conv.converged = conv.rooms_failed == 0 && conv.foreign_markers == 0;
    conv
}

/// Everything one client task owns.
#[derive(Debug)]
struct ClientTask {
    /// Global client id (room = id / clients per room).
    id: u32,
    wire: Wire,
    target: Target,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    /// Connect+sync time, or why it failed.
    ready: mpsc::UnboundedSender<Result<Duration, String>>,
    permits: Arc<Semaphore>,
    rate: f64,
    verify: bool,
    /// No client outlives this, whatever the main task does.
    hard_deadline: Instant,
}

impl ClientTask {
    async fn run(self) -> ClientOutcome {
        let c = self.shared.clients_per_room;
        let mut out = ClientOutcome {
            seen_from: vec![0; c as usize],
            ..ClientOutcome::default()
        };
        let connect = async {
            let _permit = self.permits.acquire().await?;
            let t0 = Instant::now();
            let mut ws = self.target.connect(&self.wire).await?;
            let step2 = open_and_sync(&mut ws, &self.wire, &self.target.token).await?;
            anyhow::Ok((ws, t0.elapsed(), step2))
        };
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let (ws, step2) = match timeout_at(deadline.into(), connect).await {
            Ok(Ok((ws, took, step2))) => {
                let _ = self.ready.send(Ok(took));
                (ws, step2)
            }
            Ok(Err(e)) => {
                let msg = format!("client {}: {e:#}", self.id);
                let _ = self.ready.send(Err(msg.clone()));
                out.error = Some(msg);
                return out;
            }
            Err(_) => {
                let msg = format!("client {}: no sync step 2 within {SYNC_TIMEOUT:?}", self.id);
                let _ = self.ready.send(Err(msg.clone()));
                out.error = Some(msg);
                return out;
            }
        };
        let mirror = self.verify.then(|| {
            let doc = Doc::new();
            doc.get_or_insert_text(TEXT_NAME);
            doc
        });
        let (sink, stream) = ws.split();
        let mut rx = Reception::new(&self, &mut out);
        if let Some(doc) = &mirror {
            rx.apply(doc, &step2);
        }
        let (read, written) = tokio::join!(
            self.read_loop(stream, &mut rx, mirror.as_ref()),
            self.write_loop(sink)
        );
        rx.finish(&mut out);
        let own_state = match (read, written) {
            (Ok(()), Ok(state)) => state,
            (Err(e), _) | (_, Err(e)) => {
                out.error = Some(format!("client {}: {e:#}", self.id));
                None
            }
        };
        if let (Some(doc), Some(own)) = (&mirror, own_state) {
            if let Ok(u) = Update::decode_v1(&own) {
                let _ = doc.transact_mut().apply_update(u);
            }
            let text = doc.get_or_insert_text(TEXT_NAME);
            out.final_text = Some(text.get_string(&doc.transact()));
        }
        out
    }

    async fn read_loop(
        &self,
        mut stream: SplitStream<Ws>,
        rx: &mut Reception,
        mirror: Option<&Doc>,
    ) -> Result<()> {
        let mut phase = self.phase.clone();
        let hard = sleep_until(self.hard_deadline.into());
        tokio::pin!(hard);
        // The phase changes at most three times (Waiting -> Go -> Final -> Stop).
        for _ in 0..4 {
            {
                let changed = phase.changed();
                tokio::pin!(changed);
                loop {
                    let msg = tokio::select! {
                        biased;
                        r = &mut changed => {
                            if r.is_err() {
                                return Ok(());
                            }
                            break;
                        }
                        () = &mut hard => return Ok(()),
                        msg = stream.next() => msg,
                    };
                    let data = match msg {
                        Some(Ok(Message::Binary(data))) => data,
                        // The writer closes the socket once it sees Stop, and the watch
                        // channel may wake it before this reader: the server's reply to that
                        // close is the end of the run, not an error.
                        Some(Ok(Message::Close(_)) | Err(_)) | None
                            if matches!(*self.phase.borrow(), Phase::Stop) =>
                        {
                            return Ok(());
                        }
                        Some(Ok(Message::Close(frame))) => {
                            bail!("server closed the connection: {frame:?}")
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e).context("reading"),
                        None => bail!("connection ended"),
                    };
                    let now_ns = self.shared.ns(Instant::now());
                    let mut apply_err = None;
                    self.wire.parse(&data, |m| {
                        if let Incoming::Update(u) | Incoming::SyncStep2(u) = m {
                            rx.scan(u, now_ns);
                            if let Some(doc) = mirror
                                && !rx.apply(doc, u)
                            {
                                apply_err = Some(());
                            }
                        }
                    })?;
                    rx.flush();
                    if apply_err.is_some() {
                        bail!("a received update does not apply (--verify-docs)");
                    }
                }
            }
            match *phase.borrow_and_update() {
                Phase::Go(s) => rx.sched = Some(s),
                Phase::Stop => return Ok(()),
                Phase::Waiting | Phase::Final => {}
            }
        }
        Ok(())
    }

    /// Edits until the schedule's end (or one last edit when told to make it), then waits
    /// for the stop signal and closes the socket. With `--verify-docs` returns the client's
    /// own document state.
    async fn write_loop(&self, mut sink: SplitSink<Ws, Message>) -> Result<Option<Vec<u8>>> {
        let mut phase = self.phase.clone();
        let hard = self.hard_deadline.into();
        let sched = match timeout_at(hard, phase.wait_for(|p| !matches!(p, Phase::Waiting))).await {
            Ok(Ok(p)) => match *p {
                Phase::Go(s) => s,
                Phase::Waiting | Phase::Final | Phase::Stop => return Ok(None),
            },
            _ => return Ok(None),
        };
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let period = Duration::from_secs_f64(1.0 / self.rate);
        let offset = period.mul_f64(unit_fraction(self.id));
        let mut ticker = interval_at((sched.go + offset).into(), period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let log = &self.shared.logs[self.id as usize];
        let mut mark = String::with_capacity(32);
        let mut result = Ok(());
        for seq in 0..self.shared.cap {
            // The last edit goes out as soon as it is asked for, not at the next tick.
            let last = tokio::select! {
                biased;
                p = phase.wait_for(|p| matches!(p, Phase::Final | Phase::Stop)) => {
                    match p.map(|p| *p) {
                        Ok(Phase::Final) => true,
                        _ => break,
                    }
                }
                _ = ticker.tick() => false,
            };
            // The log's last slot is kept for the last edit.
            if !last && (Instant::now() >= sched.edit_end || seq + 1 >= self.shared.cap) {
                break;
            }
            mark.clear();
            marker::write(&mut mark, self.id, seq);
            let update = {
                let mut txn = doc.transact_mut();
                text.push(&mut txn, &mark);
                txn.encode_update_v1()
            };
            let frame = Message::binary(self.wire.update(update));
            log.sent_at[seq as usize].store(self.shared.ns(Instant::now()) + 1, Ordering::Release);
            if let Err(e) = sink.send(frame).await {
                result = Err(e).context("sending an edit");
                break;
            }
            log.sent.store(seq + 1, Ordering::Release);
            if last {
                break;
            }
        }
        self.shared.writers_done.fetch_add(1, Ordering::AcqRel);
        let _ = timeout_at(hard, phase.wait_for(|p| matches!(p, Phase::Stop))).await;
        let _ = sink.send(Message::Close(None)).await;
        result?;
        Ok(self.verify.then(|| {
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default())
        }))
    }
}

/// A receiver's bookkeeping, owned by its read loop.
#[derive(Debug)]
struct Reception {
    shared: Arc<Shared>,
    /// Own global id.
    me: u32,
    /// Global id of the room's first client.
    base: u32,
    /// Node this client talks to, and how many there are.
    my_node: u32,
    nodes: u32,
    sched: Option<Schedule>,
    /// Per sender in the room: bitset of edit seqs already seen.
    seen_bits: Vec<Vec<u64>>,
    seen_from: Vec<u32>,
    latencies: Vec<u32>,
    latencies_cross: Vec<u32>,
    /// Arrival of the latest first sighting, ns since the epoch.
    last_new_ns: u64,
    delivered_in_window: u64,
    echoes: u64,
    foreign: u64,
    /// Deliveries found in the current frame, added to the shared counter once per frame.
    pending: u64,
}

impl Reception {
    fn new(task: &ClientTask, out: &mut ClientOutcome) -> Reception {
        let c = task.shared.clients_per_room;
        let nodes = task.shared.nodes;
        let words = (task.shared.cap as usize).div_ceil(64);
        Reception {
            shared: task.shared.clone(),
            me: task.id,
            base: task.id / c * c,
            my_node: node_of_client(task.id, c, nodes),
            nodes,
            sched: None,
            seen_bits: vec![vec![0; words]; c as usize],
            seen_from: std::mem::take(&mut out.seen_from),
            latencies: Vec::with_capacity(1024),
            latencies_cross: Vec::new(),
            last_new_ns: 0,
            delivered_in_window: 0,
            echoes: 0,
            foreign: 0,
            pending: 0,
        }
    }

    /// Records every marker in an update payload received at `now_ns`.
    fn scan(&mut self, payload: &[u8], now_ns: u64) {
        marker::scan(payload, |client, seq| self.record(client, seq, now_ns));
    }

    fn record(&mut self, client: u32, seq: u32, now_ns: u64) {
        if client == self.me {
            self.echoes += 1;
            return;
        }
        let c = self.shared.clients_per_room;
        if client < self.base || client - self.base >= c || seq >= self.shared.cap {
            self.foreign += 1;
            return;
        }
        let s = (client - self.base) as usize;
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen_bits[s][word] & bit != 0 {
            return;
        }
        self.seen_bits[s][word] |= bit;
        self.seen_from[s] += 1;
        self.pending += 1;
        self.last_new_ns = self.last_new_ns.max(now_ns);
        let Some(sched) = self.sched else { return };
        if (sched.start_ns..sched.end_ns).contains(&now_ns) {
            self.delivered_in_window += 1;
        }
        let sent = self.shared.logs[client as usize].sent_at[seq as usize].load(Ordering::Acquire);
        if sent == 0 {
            return;
        }
        let sent_ns = sent - 1;
        if (sched.start_ns..sched.end_ns).contains(&sent_ns) {
            let us = u32::try_from(now_ns.saturating_sub(sent_ns) / 1000).unwrap_or(u32::MAX);
            let c = self.shared.clients_per_room;
            if node_of_client(client, c, self.nodes) == self.my_node {
                self.latencies.push(us);
            } else {
                self.latencies_cross.push(us);
            }
        }
    }

    fn flush(&mut self) {
        if self.pending > 0 {
            self.shared.seen.fetch_add(self.pending, Ordering::AcqRel);
            self.pending = 0;
        }
    }

    /// Applies an update to the verification document; false if it does not decode/apply.
    fn apply(&self, doc: &Doc, update: &[u8]) -> bool {
        match Update::decode_v1(update) {
            Ok(u) => doc.transact_mut().apply_update(u).is_ok(),
            Err(_) => false,
        }
    }

    fn finish(self, out: &mut ClientOutcome) {
        out.latencies = self.latencies;
        out.latencies_cross = self.latencies_cross;
        out.last_new_ns = self.last_new_ns;
        out.delivered_in_window = self.delivered_in_window;
        out.seen_from = self.seen_from;
        out.echoes = self.echoes;
        out.foreign = self.foreign;
    }
}

/// Wakes every 5 ms in `[from, to)` and returns how late each wake-up was, in µs.
async fn scheduler_lag(from: Instant, to: Instant) -> Vec<u32> {
    const EVERY: Duration = Duration::from_millis(5);
    let mut lateness = Vec::with_capacity(4096);
    let mut next = from;
    while next < to {
        sleep_until(next.into()).await;
        let now = Instant::now();
        lateness.push(micros(now.saturating_duration_since(next)));
        next = (next + EVERY).max(now);
    }
    lateness
}

/// A deterministic number in [0, 1) per client (splitmix64), to spread edit phases.
fn unit_fraction(id: u32) -> f64 {
    let mut z = u64::from(id).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_spread_over_the_period() {
        let v: Vec<f64> = (0..1000).map(unit_fraction).collect();
        assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
        let low = v.iter().filter(|&&x| x < 0.5).count();
        assert!((400..600).contains(&low), "{low}");
    }
}
