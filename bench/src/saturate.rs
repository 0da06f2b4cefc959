//! `saturate`: steady runs with growing load until delivery lags.
//!
//! Each step is a complete [`steady`](crate::steady) run on fresh documents, with the edit
//! rate (or the clients per room) multiplied by `factor` after each step. A step *holds* when
//! the run converged, its fan-out p99 is within the limit and it delivered at least
//! `min_ratio` of what the edits called for inside the window. The first step that does not
//! hold ends the search; the last step that held is the *knee*: the highest sustained
//! deliveries per second.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::conn::Nodes;
use crate::steady;

/// What to grow between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vary {
    /// Edits per second per client.
    Rate,
    /// Clients per room.
    Clients,
}

#[derive(Debug, Clone)]
pub struct Params {
    /// The first step.
    pub first: steady::Params,
    pub vary: Vary,
    /// Growth per step (> 1).
    pub factor: f64,
    pub max_steps: u32,
    /// A step fails above this fan-out p99.
    pub p99_limit_ms: f64,
    /// A step fails below this delivered / expected ratio.
    pub min_ratio: f64,
}

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rooms: u32,
    pub clients_per_room: u32,
    pub rate: f64,
    /// Deliveries per second the load calls for at the target rate.
    pub offered_per_sec: f64,
    pub delivered_per_sec: Option<f64>,
    pub delivery_ratio: Option<f64>,
    pub fanout_p50_ms: Option<f64>,
    pub fanout_p99_ms: Option<f64>,
    pub server_cores: Option<f64>,
    pub deliveries_per_core_s: Option<f64>,
    pub generator_cores: Option<f64>,
    /// p99 of the generator's timer wake-up delay (see `steady::Outcome::generator_lag`).
    pub generator_lag_p99_ms: Option<f64>,
    pub rss_peak_kb: Option<u64>,
    pub converged: bool,
    pub held: bool,
    /// Why the step did not hold.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub vary: Vary,
    pub p99_limit_ms: f64,
    pub min_ratio: f64,
    pub steps: Vec<Step>,
    /// Index of the last step that held.
    pub knee: Option<usize>,
    /// Whether some step lagged; if not, the knee lies beyond the last step.
    pub lag_found: bool,
    /// Delivered updates/s at the knee.
    pub knee_delivered_per_sec: Option<f64>,
    /// Deliveries per server core-second at the knee.
    pub knee_deliveries_per_core_s: Option<f64>,
}

pub async fn run(nodes: &Nodes, server_pids: &[u32], prefix: &str, p: &Params) -> Result<Outcome> {
    let mut params = p.first.clone();
    let mut steps: Vec<Step> = Vec::new();
    for i in 0..p.max_steps {
        let offered = f64::from(params.rooms)
            * f64::from(params.clients)
            * f64::from(params.clients - 1)
            * params.rate;
        eprintln!(
            "saturate: step {i}: {} rooms x {} clients x {} edits/s (offered {offered:.0} deliveries/s)",
            params.rooms, params.clients, params.rate
        );
        let step = match steady::run(nodes, server_pids, &format!("{prefix}-s{i}"), &params).await {
            Ok(o) => judge(&o, offered, p),
            Err(e) => Step {
                rooms: params.rooms,
                clients_per_room: params.clients,
                rate: params.rate,
                offered_per_sec: offered,
                delivered_per_sec: None,
                delivery_ratio: None,
                fanout_p50_ms: None,
                fanout_p99_ms: None,
                server_cores: None,
                deliveries_per_core_s: None,
                generator_cores: None,
                generator_lag_p99_ms: None,
                rss_peak_kb: None,
                converged: false,
                held: false,
                reason: Some(format!("{e:#}")),
            },
        };
        let held = step.held;
        steps.push(step);
        if !held {
            break;
        }
        match p.vary {
            Vary::Rate => params.rate *= p.factor,
            Vary::Clients => {
                params.clients =
                    ((f64::from(params.clients) * p.factor).ceil() as u32).max(params.clients + 1);
            }
        }
        // Let the server settle (and close the previous step's sockets).
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let knee = steps.iter().rposition(|s| s.held);
    let lag_found = steps.last().is_some_and(|s| !s.held);
    Ok(Outcome {
        lag_found,
        vary: p.vary,
        p99_limit_ms: p.p99_limit_ms,
        min_ratio: p.min_ratio,
        knee_delivered_per_sec: knee.and_then(|k| steps[k].delivered_per_sec),
        knee_deliveries_per_core_s: knee.and_then(|k| steps[k].deliveries_per_core_s),
        knee,
        steps,
    })
}

fn judge(o: &steady::Outcome, offered: f64, p: &Params) -> Step {
    let p99 = o.fanout.p99_ms;
    let ratio = o.delivery_ratio;
    let reason = if !o.convergence.converged {
        let c = &o.convergence;
        Some(format!(
            "did not converge ({} deliveries missing, {} foreign markers{}{})",
            c.deliveries_missing,
            c.foreign_markers,
            if c.errors.is_empty() { "" } else { "; " },
            c.errors.first().map_or("", String::as_str)
        ))
    } else if p99.is_none_or(|v| v > p.p99_limit_ms) {
        Some(format!(
            "fan-out p99 {} ms > {} ms",
            p99.map_or("n/a".to_owned(), |v| format!("{v:.1}")),
            p.p99_limit_ms
        ))
    } else if o.edit_rate_achieved < 0.9 * o.rate {
        Some(format!(
            "edits went out at {:.1}/s per client, < 90% of {} (socket backpressure or generator limit)",
            o.edit_rate_achieved, o.rate
        ))
    } else if ratio.is_none_or(|r| r < p.min_ratio) {
        Some(format!(
            "delivered/expected {:.3} < {}",
            ratio.unwrap_or(0.0),
            p.min_ratio
        ))
    } else {
        None
    };
    Step {
        rooms: o.rooms,
        clients_per_room: o.clients_per_room,
        rate: o.rate,
        offered_per_sec: offered,
        delivered_per_sec: Some(o.delivered_per_sec),
        delivery_ratio: ratio,
        fanout_p50_ms: o.fanout.p50_ms,
        fanout_p99_ms: p99,
        server_cores: o.server.cores,
        deliveries_per_core_s: o.server.deliveries_per_core_s,
        generator_cores: o.generator_cores,
        generator_lag_p99_ms: o.generator_lag.p99_ms,
        rss_peak_kb: o.server.rss_peak_kb,
        converged: o.convergence.converged,
        held: reason.is_none(),
        reason,
    }
}
