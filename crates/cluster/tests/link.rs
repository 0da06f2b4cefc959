//! The Redis link against a real Redis: messages cross between two links, a node ignores
//! nothing it should receive, and a Redis that goes away and comes back is noticed both
//! ways (down, then a reconnection that subscribes every channel again).
//!
//! Needs `redis-server` (started here on a free port for each test, so stopping it harms
//! no one). Under `CI=true` a missing `redis-server` fails the test instead of skipping.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use lectern_cluster::{ClusterMetrics, RedisLink};
use tokio::sync::mpsc;

/// A `redis-server` of this test's own; killed when dropped.
struct OwnRedis {
    port: u16,
    /// Extra command-line settings.
    settings: Vec<&'static str>,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Option<Self> {
        Self::start_with(Vec::new())
    }

    fn start_with(settings: Vec<&'static str>) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self {
            port,
            settings,
            child: None,
        };
        if !redis.restart() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is needed under CI=true (scripts/services.sh installs it)"
            );
            eprintln!("skipping: redis-server is not installed");
            return None;
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port; false when there is no `redis-server`.
    fn restart(&mut self) -> bool {
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                self.child = Some(child);
                true
            }
            Err(_) => false,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn collect() -> (
    Box<dyn Fn(Bytes) + Send + Sync>,
    mpsc::UnboundedReceiver<Bytes>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let deliver = move |bytes: Bytes| {
        let _ = sender.send(bytes);
    };
    (Box::new(deliver), receiver)
}

#[tokio::test]
async fn messages_cross_between_links_on_their_channel_only() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let metrics = ClusterMetrics::default();
    let (a, b) = (
        RedisLink::start(&redis.url(), metrics.clone()).expect("url"),
        RedisLink::start(&redis.url(), ClusterMetrics::default()).expect("url"),
    );
    until("both links up", || a.is_up() && b.is_up()).await;
    let (deliver, mut received) = collect();
    let _guard = b.subscribe(Bytes::from_static(b"t:doc:{x}"), deliver).await;
    let (other, mut elsewhere) = collect();
    let _other = b.subscribe(Bytes::from_static(b"t:doc:{y}"), other).await;

    // The command connection comes up in the background too.
    until("command connection", || a.connection().is_some()).await;
    for n in 0..100u8 {
        a.publish(Bytes::from_static(b"t:doc:{x}"), Bytes::from(vec![n; 3]));
    }
    for n in 0..100u8 {
        let message = tokio::time::timeout(Duration::from_secs(5), received.recv())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(message, Bytes::from(vec![n; 3]), "in publication order");
    }
    assert!(elsewhere.try_recv().is_err(), "other channels hear nothing");
    assert_eq!(metrics.published.get(), 100);
}

#[tokio::test]
async fn a_redis_outage_is_noticed_and_ends_with_a_resubscribed_reconnection() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let metrics = ClusterMetrics::default();
    let link = RedisLink::start(&redis.url(), metrics.clone()).expect("url");
    let publisher = RedisLink::start(&redis.url(), ClusterMetrics::default()).expect("url");
    let reconnects = link.reconnects();
    until("up", || link.is_up() && publisher.connection().is_some()).await;
    let (deliver, mut received) = collect();
    let _guard = link.subscribe(Bytes::from_static(b"t:ch"), deliver).await;
    let first = *reconnects.borrow();

    redis.stop();
    until("down noticed", || !link.is_up()).await;
    assert_eq!(metrics.redis_up.get(), 0);
    assert!(redis.restart());
    until("reconnected", || {
        link.is_up() && *reconnects.borrow() > first
    })
    .await;

    // The channel was subscribed again on the new connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        publisher.publish(Bytes::from_static(b"t:ch"), Bytes::from_static(b"after"));
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(100), received.recv()).await
        {
            assert_eq!(message, Bytes::from_static(b"after"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never resubscribed");
    }
}

#[tokio::test]
async fn a_link_to_nowhere_starts_and_drops_what_it_cannot_publish() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let metrics = ClusterMetrics::default();
    let link = RedisLink::start(&format!("redis://127.0.0.1:{port}"), metrics.clone())
        .expect("a valid URL starts even with nothing listening");
    assert!(!link.is_up());
    link.publish(Bytes::from_static(b"t:ch"), Bytes::from_static(b"lost"));
    until("dropped and counted", || metrics.publish_dropped.get() == 1).await;
    assert!(
        RedisLink::start("rediss://127.0.0.1:1", metrics).is_err(),
        "TLS refused clearly"
    );
}

#[tokio::test]
async fn a_redis_without_sharded_pub_sub_is_used_with_classic_pub_sub() {
    // What a Redis older than 7 answers to SSUBSCRIBE and SPUBLISH: unknown command.
    let unknown = vec![
        "--rename-command",
        "SSUBSCRIBE",
        "",
        "--rename-command",
        "SPUBLISH",
        "",
        "--rename-command",
        "SUNSUBSCRIBE",
        "",
    ];
    let Some(redis) = OwnRedis::start_with(unknown) else {
        return;
    };
    let (a, b) = (
        RedisLink::start(&redis.url(), ClusterMetrics::default()).expect("url"),
        RedisLink::start(&redis.url(), ClusterMetrics::default()).expect("url"),
    );
    let (deliver, mut received) = collect();
    let _guard = b.subscribe(Bytes::from_static(b"t:ch"), deliver).await;
    until("both links up", || {
        a.is_up() && b.is_up() && a.connection().is_some()
    })
    .await;
    a.publish(Bytes::from_static(b"t:ch"), Bytes::from_static(b"classic"));
    let message = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(message, Bytes::from_static(b"classic"));
}
