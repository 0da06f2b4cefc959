//! `join-storm`: a large document, then K clients joining at once.
//!
//! 1. A writer builds a document of about N MiB in one `Y.Text`: chunks inserted at the
//!    front, so every chunk stays its own item (a document with many items, as typing makes,
//!    not one long string), sent as one update per batch of inserts.
//! 2. A fresh probe client syncs until its step 2 holds the whole text, so the storm starts
//!    only once the server has everything (servers that persist first may lag).
//! 3. K clients connect at the same instant. A client's time is from the storm start to the
//!    arrival of its complete sync step 2; the storm's time is the slowest client's. While it
//!    runs, a sampler thread reads the server's VmRSS every 10 ms.
//! 4. Afterwards every distinct step-2 payload is applied to a fresh `yrs::Doc` and its text
//!    length checked. Applying is deferred so the generator's CPU does not compete with the
//!    server's during the storm (on a 2-core machine it would); servers usually send the same
//!    bytes to every joiner, so this is cheap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode as _;
use yrs::{Doc, Text as _, Transact as _, Update};

use crate::conn::{SYNC_TIMEOUT, Target, Ws, open_and_sync};
use crate::procfs::{Sampler, servers_hwm_kb, servers_rss_kb};
use crate::stats::{Dist, micros};
use crate::steady::SAMPLE_EVERY;

const TEXT_NAME: &str = "storm";

/// What a join storm does.
#[derive(Debug, Clone)]
pub struct Params {
    /// Document size to build, MiB of text.
    pub size_mb: f64,
    /// Clients joining at once.
    pub clients: u32,
    /// Bytes per inserted chunk (one item each).
    pub chunk_bytes: usize,
    /// Inserts per update sent by the writer.
    pub batch: usize,
    /// Longest wait for the build to reach the server and for the storm itself.
    pub timeout: Duration,
}

/// Figures of a join storm.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub clients: u32,
    /// Length of the document text, bytes.
    pub text_bytes: u64,
    /// Inserted chunks (items).
    pub items: u64,
    /// Size of the sync step 2 the probe received, bytes.
    pub state_bytes: u64,
    /// Writer: building and sending every update.
    pub build_s: f64,
    /// From the last update sent until a fresh client synced the whole document.
    pub settle_s: f64,
    /// Storm start until the last client received its full state (`None` if some never did).
    pub all_received_s: Option<f64>,
    /// Per client: storm start until its sync step 2 arrived.
    pub per_client: Dist,
    /// Per client: its own TCP connect until its sync step 2 arrived.
    pub connect_sync: Dist,
    pub received: u32,
    /// Clients whose step 2 applied to a document with the full text length.
    pub verified: u32,
    /// Distinct step-2 payloads the server sent.
    pub distinct_payloads: usize,
    pub server: StormServer,
    pub generator_cores: Option<f64>,
    pub converged: bool,
    pub errors: Vec<String>,
}

/// Server memory and CPU around the storm.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StormServer {
    /// VmRSS right before the storm (document loaded, writer connected).
    pub rss_before_kb: Option<u64>,
    /// Largest VmRSS sampled between storm start and the last client's state.
    pub rss_peak_kb: Option<u64>,
    /// VmRSS when every client had its state (all still connected).
    pub rss_after_kb: Option<u64>,
    /// `rss_peak - rss_before`.
    pub rss_delta_kb: Option<i64>,
    /// VmHWM (peak since the server started) before and after the storm.
    pub hwm_before_kb: Option<u64>,
    pub hwm_after_kb: Option<u64>,
    /// CPU seconds the server used during the storm.
    pub cpu_s: Option<f64>,
}

/// One joiner's report.
#[derive(Debug)]
struct Joined {
    /// Storm start to step 2.
    since_go: Duration,
    /// Own connect to step 2.
    since_connect: Duration,
    /// Index into the distinct payloads.
    payload: usize,
}

pub async fn run(
    target: &Target,
    server_pids: &[u32],
    prefix: &str,
    p: &Params,
) -> Result<Outcome> {
    ensure!(p.clients >= 1, "at least one client");
    ensure!(
        p.chunk_bytes >= 1 && p.batch >= 1,
        "chunk and batch must be positive"
    );
    let target_bytes = (p.size_mb * 1024.0 * 1024.0) as u64;
    let items = target_bytes.div_ceil(p.chunk_bytes as u64).max(1);
    let text_bytes = items * p.chunk_bytes as u64;
    let deadline = Instant::now() + p.timeout;
    let doc_name = format!("{prefix}-storm");
    let wire = target.wire(&doc_name);
    let sampler = Sampler::start(server_pids.to_vec(), SAMPLE_EVERY);

    // 1. The writer builds the document.
    eprintln!("join-storm: building {text_bytes} bytes in {items} inserts");
    let mut writer = target.connect(&wire).await.context("writer")?;
    timeout_at(
        deadline.into(),
        open_and_sync(&mut writer, &wire, &target.token),
    )
    .await
    .context("writer sync timed out")??;
    let (mut sink, mut stream) = writer.split();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    // Drain whatever the server sends the writer (echoes), so its socket never backs up.
    let drain = tokio::spawn(async move {
        let hard = tokio::time::sleep_until(deadline.into());
        tokio::pin!(hard);
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                () = &mut hard => break,
                msg = stream.next() => if !matches!(msg, Some(Ok(_))) { break },
            }
        }
        stream
    });
    let build_start = Instant::now();
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut chunk = String::with_capacity(p.chunk_bytes);
    let mut done = 0u64;
    while done < items {
        let n = (items - done).min(p.batch as u64);
        let update = {
            let mut txn = doc.transact_mut();
            for i in done..done + n {
                make_chunk(&mut chunk, i, p.chunk_bytes);
                text.insert(&mut txn, 0, &chunk);
            }
            txn.encode_update_v1()
        };
        sink.send(Message::binary(wire.update(update)))
            .await
            .context("writer send")?;
        done += n;
    }
    let build_s = build_start.elapsed().as_secs_f64();
    drop(doc);

    // 2. Wait until a fresh client gets the whole document.
    let settle_start = Instant::now();
    let mut state_bytes = 0u64;
    let mut settled = false;
    for _ in 0..10_000u32 {
        if Instant::now() >= deadline {
            break;
        }
        let (len, bytes) = probe(target, &wire, deadline).await?;
        state_bytes = bytes;
        if len == text_bytes {
            settled = true;
            break;
        }
        sleep(Duration::from_millis(250)).await;
    }
    if !settled {
        let _ = stop_tx.send(true);
        sampler.finish();
        bail!("the server did not hold the whole document ({text_bytes} bytes) in time");
    }
    let settle_s = settle_start.elapsed().as_secs_f64();
    eprintln!(
        "join-storm: server holds the document (state {state_bytes} bytes); {} clients join",
        p.clients
    );

    // 3. The storm.
    sleep(Duration::from_millis(300)).await;
    let rss_before = servers_rss_kb(server_pids);
    let hwm_before = servers_hwm_kb(server_pids);
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<Joined, String>>();
    let payloads: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let storm_deadline = Instant::now() + p.timeout;
    let mut tasks = Vec::with_capacity(p.clients as usize);
    for id in 0..p.clients {
        tasks.push(tokio::spawn(joiner(
            id,
            target.clone(),
            wire.clone(),
            go_rx.clone(),
            done_tx.clone(),
            payloads.clone(),
            storm_deadline,
        )));
    }
    drop(done_tx);
    // Let every task reach its wait for the start signal.
    sleep(Duration::from_millis(200)).await;
    let go = Instant::now();
    go_tx.send_replace(Some(go));

    let mut joined = Vec::with_capacity(p.clients as usize);
    let mut errors = Vec::new();
    while joined.len() + errors.len() < p.clients as usize {
        match timeout_at(storm_deadline.into(), done_rx.recv()).await {
            Ok(Some(Ok(j))) => joined.push(j),
            Ok(Some(Err(e))) => errors.push(e),
            Ok(None) => break,
            Err(_) => {
                errors.push("storm timed out".to_owned());
                break;
            }
        }
    }
    let storm_end = Instant::now();
    let rss_after = servers_rss_kb(server_pids);
    let hwm_after = servers_hwm_kb(server_pids);
    go_tx.send_replace(None);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    if let Ok(stream) = drain.await
        && let Ok(mut ws) = sink.reunite(stream)
    {
        let _ = ws.close(None).await;
    }
    let series = sampler.finish();

    // 4. Verify every distinct payload.
    let distinct: Vec<Bytes> = payloads.lock().map(|v| v.clone()).unwrap_or_default();
    let distinct_payloads = distinct.len();
    let ok: Vec<bool> = tokio::task::spawn_blocking(move || {
        distinct
            .iter()
            .map(|u| text_len(u) == Some(text_bytes))
            .collect()
    })
    .await
    .context("verification panicked")?;
    let verified = joined
        .iter()
        .filter(|j| ok.get(j.payload) == Some(&true))
        .count() as u32;

    let all_received = errors.is_empty() && joined.len() == p.clients as usize;
    let mut since_go: Vec<u32> = joined.iter().map(|j| micros(j.since_go)).collect();
    let mut since_connect: Vec<u32> = joined.iter().map(|j| micros(j.since_connect)).collect();
    let rss_peak = series.peak_rss_kb(go, storm_end + Duration::from_millis(20));
    let per_client = Dist::from_micros(&mut since_go);
    errors.truncate(5);
    Ok(Outcome {
        clients: p.clients,
        text_bytes,
        items,
        state_bytes,
        build_s,
        settle_s,
        all_received_s: all_received.then(|| per_client.max_ms.unwrap_or(0.0) / 1000.0),
        per_client,
        connect_sync: Dist::from_micros(&mut since_connect),
        received: joined.len() as u32,
        verified,
        distinct_payloads,
        server: StormServer {
            rss_before_kb: rss_before,
            rss_peak_kb: rss_peak,
            rss_after_kb: rss_after,
            rss_delta_kb: match (rss_peak, rss_before) {
                (Some(a), Some(b)) => Some(a as i64 - b as i64),
                _ => None,
            },
            hwm_before_kb: hwm_before,
            hwm_after_kb: hwm_after,
            cpu_s: series.server_cpu_secs(go, storm_end),
        },
        generator_cores: series.cores(go, storm_end).1,
        converged: all_received && verified == p.clients,
        errors,
    })
}

/// One joining client: waits for the start, connects, syncs, reports, and stays connected
/// until the storm is over.
async fn joiner(
    id: u32,
    target: Target,
    wire: crate::wire::Wire,
    mut go: watch::Receiver<Option<Instant>>,
    done: mpsc::UnboundedSender<Result<Joined, String>>,
    payloads: Arc<Mutex<Vec<Bytes>>>,
    deadline: Instant,
) {
    let start = match timeout_at(deadline.into(), go.wait_for(Option::is_some)).await {
        Ok(Ok(v)) => (*v).unwrap_or_else(Instant::now),
        _ => {
            let _ = done.send(Err(format!("joiner {id}: no start signal")));
            return;
        }
    };
    let t0 = Instant::now();
    let synced = async {
        let mut ws = target.connect(&wire).await?;
        let step2 = open_and_sync(&mut ws, &wire, &target.token).await?;
        anyhow::Ok((ws, step2))
    };
    let (mut ws, step2) = match timeout_at(deadline.into(), synced).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = done.send(Err(format!("joiner {id}: {e:#}")));
            return;
        }
        Err(_) => {
            let _ = done.send(Err(format!("joiner {id}: timed out")));
            return;
        }
    };
    let at = Instant::now();
    let payload = intern(&payloads, step2);
    let _ = done.send(Ok(Joined {
        since_go: at.duration_since(start),
        since_connect: at.duration_since(t0),
        payload,
    }));
    hold(&mut ws, &mut go, deadline).await;
    let _ = ws.close(None).await;
}

/// Keeps reading (pings, awareness) until the start signal is withdrawn or the deadline.
async fn hold(ws: &mut Ws, go: &mut watch::Receiver<Option<Instant>>, deadline: Instant) {
    let hard = tokio::time::sleep_until(deadline.into());
    tokio::pin!(hard);
    // Bounded by the deadline.
    loop {
        tokio::select! {
            r = go.changed() => {
                if r.is_err() || go.borrow_and_update().is_none() {
                    return;
                }
            }
            () = &mut hard => return,
            msg = ws.next() => if !matches!(msg, Some(Ok(_))) { return },
        }
    }
}

/// Index of `payload` in the distinct payloads, adding it if new.
fn intern(payloads: &Mutex<Vec<Bytes>>, payload: Bytes) -> usize {
    let Ok(mut v) = payloads.lock() else {
        return usize::MAX;
    };
    if let Some(i) = v.iter().position(|p| *p == payload) {
        return i;
    }
    v.push(payload);
    v.len() - 1
}

/// A fresh client syncs; returns the text length of its document and the step-2 size.
async fn probe(target: &Target, wire: &crate::wire::Wire, deadline: Instant) -> Result<(u64, u64)> {
    let until = deadline.min(Instant::now() + SYNC_TIMEOUT);
    let synced = async {
        let mut ws = target.connect(wire).await?;
        let step2 = open_and_sync(&mut ws, wire, &target.token).await?;
        let _ = ws.close(None).await;
        anyhow::Ok(step2)
    };
    let step2 = timeout_at(until.into(), synced)
        .await
        .context("probe timed out")??;
    let size = step2.len() as u64;
    let len = tokio::task::spawn_blocking(move || text_len(&step2))
        .await
        .context("probe apply panicked")?
        .context("the server's sync step 2 does not apply")?;
    Ok((len, size))
}

/// Text length of a fresh document after applying `update`.
fn text_len(update: &[u8]) -> Option<u64> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT_NAME);
    let u = Update::decode_v1(update).ok()?;
    doc.transact_mut().apply_update(u).ok()?;
    Some(u64::from(text.len(&doc.transact())))
}

/// Fills `out` with chunk `i`: its number, then filler, `len` ASCII bytes in all.
fn make_chunk(out: &mut String, i: u64, len: usize) {
    use std::fmt::Write as _;
    out.clear();
    let _ = write!(out, "{i:x}:");
    out.truncate(len);
    let filler = b"lorem ipsum dolor sit amet consectetur adipiscing elit ";
    let mut k = (i as usize) % filler.len();
    while out.len() < len {
        out.push(char::from(filler[k]));
        k = (k + 1) % filler.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_have_the_requested_length() {
        let mut s = String::new();
        for (i, len) in [(0, 1), (7, 3), (123_456, 64), (u64::MAX, 5)] {
            make_chunk(&mut s, i, len);
            assert_eq!(s.len(), len, "{s:?}");
        }
    }

    #[test]
    fn prepended_chunks_stay_separate_items_and_apply() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let mut chunk = String::new();
        let mut updates = Vec::new();
        for batch in 0..3u64 {
            let mut txn = doc.transact_mut();
            for i in batch * 10..batch * 10 + 10 {
                make_chunk(&mut chunk, i, 16);
                text.insert(&mut txn, 0, &chunk);
            }
            updates.push(txn.encode_update_v1());
        }
        let merged = yrs::merge_updates_v1(&updates).expect("merge");
        assert_eq!(text_len(&merged), Some(30 * 16));
    }
}
