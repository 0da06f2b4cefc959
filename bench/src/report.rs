//! Human-readable tables. "n/a" stands for a figure that could not be measured (no
//! `--server-pid`, or no samples in the window).

use std::fmt::Write as _;

use crate::reconverge;
use crate::saturate;
use crate::stats::Dist;
use crate::steady;
use crate::storm;

fn num(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"))
}

/// An edit rate with at most two decimals and no trailing zeros.
fn rate(r: f64) -> String {
    let s = format!("{r:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "n/a".to_owned(),
        |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
    )
}

fn dist(d: &Dist) -> String {
    format!(
        "p50 {:>8} ms   p99 {:>8} ms   max {:>8} ms   (n={})",
        num(d.p50_ms, 2),
        num(d.p99_ms, 2),
        num(d.max_ms, 2),
        d.n
    )
}

/// The header line shared by every mode.
pub fn header(mode: &str, protocol: &str, urls: &[String]) -> String {
    format!(
        "lectern-bench {mode}  protocol={protocol}  url={}\n",
        urls.join(",")
    )
}

/// Per-process cores, when there are several server processes.
fn cores_each(pids: &[u32], cores: &[Option<f64>]) -> String {
    if pids.len() < 2 {
        return String::new();
    }
    let each: Vec<String> = pids
        .iter()
        .zip(cores)
        .map(|(pid, c)| format!("{pid}: {}", num(*c, 2)))
        .collect();
    format!(" [{}]", each.join(", "))
}

pub fn steady(o: &steady::Outcome) -> String {
    let mut s = String::new();
    let c = &o.convergence;
    let v = &o.server;
    let _ = writeln!(
        s,
        "  load              {} rooms x {} clients, {} edits/s per client, {:.1} s measured after {:.1} s warm-up",
        o.rooms, o.clients_per_room, o.rate, o.duration_s, o.warmup_s
    );
    let _ = writeln!(s, "  connect+sync      {}", dist(&o.connect_sync));
    let _ = writeln!(s, "  fan-out latency   {}", dist(&o.fanout));
    if let (Some(same), Some(cross)) = (&o.fanout_same_node, &o.fanout_cross_node) {
        let _ = writeln!(s, "    same node       {}", dist(same));
        let _ = writeln!(
            s,
            "    cross node      {}  ({} nodes)",
            dist(cross),
            o.nodes
        );
    }
    let _ = writeln!(
        s,
        "  edits             {} in window = {:.2}/s per client (target {})",
        o.edits_in_window, o.edit_rate_achieved, o.rate
    );
    let _ = writeln!(
        s,
        "  delivered         {:.0} updates/s (expected {:.0}/s, ratio {})",
        o.delivered_per_sec,
        o.expected_per_sec,
        num(o.delivery_ratio, 3)
    );
    let _ = writeln!(
        s,
        "  server CPU        {} cores ({} s) -> {} deliveries per core-second{}",
        num(v.cores, 2),
        num(v.cpu_s, 2),
        num(v.deliveries_per_core_s, 0),
        cores_each(&v.pids, &v.cores_each)
    );
    let _ = writeln!(
        s,
        "  server RSS        baseline {}, after connect {}, peak {}, end {}, after close {}",
        mib(v.rss_baseline_kb),
        mib(v.rss_after_connect_kb),
        mib(v.rss_peak_kb),
        mib(v.rss_end_kb),
        mib(v.rss_after_close_kb)
    );
    let _ = writeln!(s, "  RSS per room      {} KiB", num(v.rss_per_room_kb, 0));
    let _ = writeln!(s, "  generator CPU     {} cores", num(o.generator_cores, 2));
    let _ = writeln!(
        s,
        "  generator lag     {}  (5 ms timer wake-up delay)",
        dist(&o.generator_lag)
    );
    let _ = writeln!(
        s,
        "  convergence       {}: {}/{} deliveries seen over the run, {} missing, {} rooms failed{}; {} own edits echoed (not counted), {} foreign markers{}",
        if c.converged { "OK" } else { "FAILED" },
        c.deliveries_seen,
        c.deliveries_expected,
        c.deliveries_missing,
        c.rooms_failed,
        if c.drained { "" } else { " (drain timed out)" },
        c.echoes,
        c.foreign_markers,
        match c.docs_identical {
            Some(true) => "; documents identical",
            Some(false) => "; DOCUMENTS DIFFER",
            None => "",
        }
    );
    for e in &c.errors {
        let _ = writeln!(s, "  error             {e}");
    }
    s
}

pub fn saturate(o: &saturate::Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  vary {:?}; a step holds if converged, fan-out p99 <= {} ms, delivered/expected >= {}",
        o.vary, o.p99_limit_ms, o.min_ratio
    );
    let _ = writeln!(
        s,
        "  {:>4} {:>5} {:>7} {:>8} {:>10} {:>10} {:>6} {:>8} {:>8} {:>6} {:>10} {:>6} {:>8} {:>9}  result",
        "step",
        "rooms",
        "clients",
        "rate",
        "offered/s",
        "deliv/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "cores",
        "deliv/c-s",
        "gen c",
        "lag p99",
        "peak RSS"
    );
    for (i, st) in o.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {:>4} {:>5} {:>7} {:>8} {:>10.0} {:>10} {:>6} {:>8} {:>8} {:>6} {:>10} {:>6} {:>8} {:>9}  {}",
            i,
            st.rooms,
            st.clients_per_room,
            rate(st.rate),
            st.offered_per_sec,
            num(st.delivered_per_sec, 0),
            num(st.delivery_ratio, 3),
            num(st.fanout_p50_ms, 2),
            num(st.fanout_p99_ms, 2),
            num(st.server_cores, 2),
            num(st.deliveries_per_core_s, 0),
            num(st.generator_cores, 2),
            num(st.generator_lag_p99_ms, 1),
            mib(st.rss_peak_kb),
            st.reason.as_deref().unwrap_or("held")
        );
    }
    match o.knee {
        Some(k) => {
            let _ = writeln!(
                s,
                "  knee              step {k}: {} deliveries/s sustained, {} deliveries per server core-second{}",
                num(o.knee_delivered_per_sec, 0),
                num(o.knee_deliveries_per_core_s, 0),
                if o.lag_found {
                    ""
                } else {
                    " (no step lagged: the knee lies further; raise --max-steps)"
                }
            );
        }
        None => {
            let _ = writeln!(s, "  knee              none: the first step already lagged");
        }
    }
    s
}

pub fn reconverge(o: &reconverge::Outcome) -> String {
    let mut s = String::new();
    let c = &o.convergence;
    let _ = writeln!(
        s,
        "  load              {} rooms x {} clients over {} node(s), {} edits/s per client; {:.1} s before the outage",
        o.rooms, o.clients_per_room, o.nodes, o.rate, o.warmup_s
    );
    let _ = writeln!(s, "  connect+sync      {}", dist(&o.connect_sync));
    let _ = writeln!(s, "  fan-out before    {}", dist(&o.fanout_before));
    let _ = writeln!(
        s,
        "  outage            stop took {:.3} s; down for {:.2} s ({} deliveries meanwhile); start took {:.3} s",
        o.stop_cmd_s, o.outage_s, o.deliveries_during_outage, o.start_cmd_s
    );
    let _ = writeln!(
        s,
        "  reconverge/room   {}  (start launched -> room agrees)",
        dist(&o.reconverge)
    );
    let _ = writeln!(
        s,
        "  all rooms agree   {} s after the start was launched, {} s after the service answered; {}/{} rooms",
        num(o.all_rooms_s, 3),
        num(o.all_rooms_after_up_s, 3),
        o.rooms_reconverged,
        o.rooms
    );
    let _ = writeln!(
        s,
        "  convergence       {}: {}/{} deliveries seen over the run, {} missing, {} rooms failed{}{}",
        if c.converged { "OK" } else { "FAILED" },
        c.deliveries_seen,
        c.deliveries_expected,
        c.deliveries_missing,
        c.rooms_failed,
        if c.drained { "" } else { " (timed out)" },
        match c.docs_identical {
            Some(true) => "; documents identical",
            Some(false) => "; DOCUMENTS DIFFER",
            None => "",
        }
    );
    for e in &c.errors {
        let _ = writeln!(s, "  error             {e}");
    }
    s
}

pub fn storm(o: &storm::Outcome) -> String {
    let mut s = String::new();
    let v = &o.server;
    let _ = writeln!(
        s,
        "  document          {} bytes of text in {} items; sync step 2 is {} bytes",
        o.text_bytes, o.items, o.state_bytes
    );
    let _ = writeln!(
        s,
        "  build             {:.2} s to send, {:.2} s until a fresh client synced all of it",
        o.build_s, o.settle_s
    );
    let _ = writeln!(
        s,
        "  storm             {} clients at once; all received full state in {} s",
        o.clients,
        num(o.all_received_s, 3)
    );
    let _ = writeln!(
        s,
        "  per client        {}  (storm start -> step 2)",
        dist(&o.per_client)
    );
    let _ = writeln!(
        s,
        "  connect+sync      {}  (own connect -> step 2)",
        dist(&o.connect_sync)
    );
    let _ = writeln!(
        s,
        "  server RSS        before {}, peak {} (+{}), after {}; VmHWM {} -> {}",
        mib(v.rss_before_kb),
        mib(v.rss_peak_kb),
        v.rss_delta_kb.map_or("n/a".to_owned(), |d| format!(
            "{:.1} MiB",
            d as f64 / 1024.0
        )),
        mib(v.rss_after_kb),
        mib(v.hwm_before_kb),
        mib(v.hwm_after_kb)
    );
    let _ = writeln!(
        s,
        "  server CPU        {} s during the storm; generator {} cores",
        num(v.cpu_s, 2),
        num(o.generator_cores, 2)
    );
    let _ = writeln!(
        s,
        "  verification      {}: {}/{} received, {} verified (text length), {} distinct payloads",
        if o.converged { "OK" } else { "FAILED" },
        o.received,
        o.clients,
        o.verified,
        o.distinct_payloads
    );
    for e in &o.errors {
        let _ = writeln!(s, "  error             {e}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_figures_read_n_a() {
        assert_eq!(num(None, 2), "n/a");
        assert_eq!(num(Some(1.234), 1), "1.2");
        assert_eq!(mib(Some(2048)), "2.0 MiB");
        assert_eq!(rate(172.995_117), "173");
        assert_eq!(rate(4.5), "4.5");
        assert_eq!(rate(2.0), "2");
    }
}
