//! Counters and cached values the nodes of a cluster share through Redis: rate-limit
//! buckets, AI budgets and AI answers.
//!
//! Whoever uses this (the rate limiters, the budget, the answer cache) keeps its own
//! in-process state too, and falls back to it whenever Redis cannot answer: the link has
//! not connected yet, a command failed, or no answer came within the link's command
//! timeout. While Redis is out each node therefore enforces its limits alone, as a single
//! node does; `lectern_redis_fallbacks_total` counts the operations served that way, and
//! one warning per outage (not per call) says so. A node on its own (no Redis) uses only
//! its in-process state and never counts a fallback.
//!
//! After a command fails or times out, Redis is left alone for [`PAUSE_AFTER_FAILURE`]: a
//! Redis that stopped answering would otherwise add the whole command timeout to every
//! request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use redis::aio::ConnectionManager;

use crate::cluster::Cluster;

/// How long calls skip Redis after one failed or timed out.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The node's access to shared counters and caches. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ClusterStore(Option<Arc<Inner>>);

#[derive(Debug)]
struct Inner {
    /// The node's cluster handles: the Redis link and the key prefix.
    cluster: Cluster,
    /// `lectern_redis_fallbacks_total`.
    fallbacks: Counter,
    /// Whether an outage was reported and Redis has not answered since: the fast path
    /// of every call reads only this.
    failing: AtomicBool,
    /// Details of the outage, read only while `failing`.
    // A std mutex: a few assignments, never held across an await.
    outage: Mutex<Outage>,
}

/// What is known of the current outage.
#[derive(Debug, Default)]
struct Outage {
    /// When it was first noticed.
    since: Option<Instant>,
    /// Calls before this instant skip Redis.
    paused_until: Option<Instant>,
}

/// Why a call did not reach Redis.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("no connection to Redis yet")]
    NotConnected,
    #[error(transparent)]
    Failed(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

impl ClusterStore {
    /// Shared through `cluster`'s Redis when it has one; in process only otherwise.
    /// Every fallback to the in-process state counts in `fallbacks`.
    pub(crate) fn new(cluster: &Cluster, fallbacks: Counter) -> Self {
        Self(cluster.link().is_some().then(|| {
            Arc::new(Inner {
                cluster: cluster.clone(),
                fallbacks,
                failing: AtomicBool::new(false),
                outage: Mutex::new(Outage::default()),
            })
        }))
    }

    /// A store of a node on its own: everything stays in process.
    #[cfg(test)]
    pub(crate) fn local() -> Self {
        Self(None)
    }

    /// The cluster these values are shared in; None on a node on its own.
    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.0.as_ref().map(|inner| &inner.cluster)
    }

    /// Whether values are shared with other nodes (the node has Redis). When false,
    /// [`ClusterStore::run`] never runs anything: callers skip building its arguments.
    pub(crate) fn is_shared(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `command` on Redis with the full key for `name` (the deployment's prefix
    /// added) and a connection. `None` means "use what this node knows": the node is on
    /// its own, or Redis did not answer in time (counted and reported).
    pub(crate) async fn run<T, F>(
        &self,
        name: &str,
        command: impl FnOnce(String, ConnectionManager) -> F,
    ) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let inner = self.0.as_deref()?;
        let link = inner.cluster.link()?;
        if inner.paused() {
            inner.fallbacks.inc();
            return None;
        }
        let Some(connection) = link.connection() else {
            // Not connected yet costs no time: no pause, the next call tries again.
            inner.fell_back(&Unavailable::NotConnected, false);
            return None;
        };
        let timeout = link.command_timeout();
        match tokio::time::timeout(timeout, command(inner.cluster.key(name), connection)).await {
            Ok(Ok(value)) => {
                inner.answered();
                Some(value)
            }
            Ok(Err(error)) => {
                inner.fell_back(&Unavailable::Failed(error), true);
                None
            }
            Err(_) => {
                inner.fell_back(&Unavailable::TimedOut(timeout), true);
                None
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outage> {
        // A poisoned lock only means a panic mid-assignment; the fields are still usable.
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether calls skip Redis for now, after a recent failure.
    fn paused(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
            && self
                .lock()
                .paused_until
                .is_some_and(|until| Instant::now() < until)
    }

    /// Counts a fallback; warns when it starts an outage; pauses Redis calls if `pause`.
    fn fell_back(&self, why: &Unavailable, pause: bool) {
        self.fallbacks.inc();
        let now = Instant::now();
        let mut outage = self.lock();
        if pause {
            outage.paused_until = Some(now + PAUSE_AFTER_FAILURE);
        }
        if outage.since.is_none() {
            outage.since = Some(now);
            self.failing.store(true, Ordering::Relaxed);
            tracing::warn!(
                error = why as &dyn std::error::Error,
                "Redis did not answer: rate limits, AI budgets and the answer cache count on \
                 this node alone until it does"
            );
        }
    }

    /// Ends the outage, if there was one.
    fn answered(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let mut outage = self.lock();
        self.failing.store(false, Ordering::Relaxed);
        outage.paused_until = None;
        if let Some(since) = outage.since.take() {
            tracing::info!(
                after = ?since.elapsed(),
                "Redis answers again: limits, budgets and the answer cache are cluster-wide again"
            );
        }
    }
}

/// Stores for unit tests, on the Redis the tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::{Duration, Instant};

    use prometheus_client::metrics::counter::Counter;

    use super::ClusterStore;
    use crate::cluster::Cluster;
    use crate::config::Config;

    /// The Redis the tests use (`LECTERN_TEST_REDIS_URL`, default the local one); `None`
    /// when unreachable, except under `CI=true`, where that fails the test.
    pub(crate) async fn redis_url() -> Option<String> {
        let url = std::env::var("LECTERN_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let (store, _) = store(&url, "lectern-test-probe");
        if connected(&store, Duration::from_secs(2)).await {
            return Some(url);
        }
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("Redis at {url} is required under CI=true");
        }
        eprintln!("skipping: Redis at {url} unreachable");
        None
    }

    /// A node's store on the Redis at `url` under key prefix `prefix`, and its fallback
    /// counter. Connects in the background, as a node's does.
    pub(crate) fn store(url: &str, prefix: &str) -> (ClusterStore, Counter) {
        let mut config = Config::with_defaults(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            std::env::temp_dir(),
        );
        config.redis_url = Some(url.into());
        config.redis_prefix = prefix.to_owned();
        let cluster = Cluster::from_config(&config, lectern_cluster::ClusterMetrics::default())
            .expect("cluster");
        let fallbacks = Counter::default();
        (ClusterStore::new(&cluster, fallbacks.clone()), fallbacks)
    }

    /// A prefix no other test uses.
    pub(crate) fn unique_prefix() -> String {
        format!("lectern-test-{}", uuid::Uuid::new_v4())
    }

    /// Waits (at most `within`) until `store` has a command connection.
    pub(crate) async fn connected(store: &ClusterStore, within: Duration) -> bool {
        let Some(inner) = store.0.as_deref() else {
            return false;
        };
        let Some(link) = inner.cluster.link() else {
            return false;
        };
        let deadline = Instant::now() + within;
        while link.connection().is_none() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Two stores on one Redis under one fresh prefix, both connected, as two nodes of
    /// one deployment; `None` without Redis (outside CI).
    pub(crate) async fn two_nodes() -> Option<[(ClusterStore, Counter); 2]> {
        let url = redis_url().await?;
        let prefix = unique_prefix();
        let nodes = [store(&url, &prefix), store(&url, &prefix)];
        for (store, _) in &nodes {
            assert!(connected(store, Duration::from_secs(5)).await, "connects");
        }
        Some(nodes)
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// A `redis-server` of the test's own on a free port (so the test may stop it), killed
    /// when dropped.
    struct OwnRedis {
        child: Child,
        url: String,
    }

    impl OwnRedis {
        /// `None` when `redis-server` is not installed (a failure under `CI=true`).
        fn start() -> Option<Self> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("free port")
                .port()
                .to_string();
            let spawned = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => Some(Self {
                    child,
                    url: format!("redis://127.0.0.1:{port}"),
                }),
                Err(error) => {
                    assert!(
                        !std::env::var("CI").is_ok_and(|ci| ci == "true"),
                        "redis-server is required under CI=true: {error}"
                    );
                    eprintln!("skipping: no redis-server ({error})");
                    None
                }
            }
        }

        /// Sends `signal` (`-STOP`, `-CONT`) to the server.
        fn signal(&self, signal: &str) {
            let status = Command::new("kill")
                .args([signal, &self.child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {signal}");
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn increment(store: &ClusterStore) -> Option<i64> {
        store
            .run("n", |key, mut connection| async move {
                redis::cmd("INCR")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
            })
            .await
    }

    #[tokio::test]
    async fn a_redis_that_stops_answering_costs_one_timeout_then_is_skipped_until_it_answers() {
        let Some(redis) = OwnRedis::start() else {
            return;
        };
        let (store, fallbacks) = testing::store(&redis.url, &testing::unique_prefix());
        assert!(testing::connected(&store, Duration::from_secs(10)).await);
        assert_eq!(increment(&store).await, Some(1));

        // Stopped, Redis keeps the connection open and answers nothing: the first call
        // waits for the command timeout (about a second), no longer...
        redis.signal("-STOP");
        let started = Instant::now();
        assert_eq!(increment(&store).await, None);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_millis(2500),
            "{waited:?}"
        );
        // ...and the next ones do not wait at all while Redis is paused.
        let started = Instant::now();
        for _ in 0..10 {
            assert_eq!(increment(&store).await, None);
        }
        assert!(started.elapsed() < Duration::from_millis(200));
        assert_eq!(fallbacks.get(), 11);

        // Back: calls reach Redis again once the pause is over, where the count went on.
        redis.signal("-CONT");
        let deadline = Instant::now() + Duration::from_secs(10);
        let count = loop {
            if let Some(count) = increment(&store).await {
                break count;
            }
            assert!(Instant::now() < deadline, "Redis never answered again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(count >= 2, "{count}");
    }
}
