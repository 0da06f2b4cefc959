//! The node's link to Redis: one subscriber connection multiplexing every channel the node
//! listens on, one publisher queue, and a command connection for counters and caches.
//!
//! Redis is optional at run time. The link connects in the background and reconnects
//! forever; while it is down, publications are dropped (counted) and commands fail fast, so
//! callers fall back to what this node knows. Every (re)connection of the subscriber bumps
//! [`RedisLink::reconnects`]: messages may have been lost meanwhile, and rooms answer by
//! comparing state with the other nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo as _};
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::ClusterMetrics;
use crate::resp::{self, RespError, Value};

/// Publications waiting for the publisher; beyond this they are dropped (and repaired by
/// the receivers' gap detection), so a slow Redis never grows a node's memory.
const PUBLISH_QUEUE: usize = 16 * 1024;
/// Publications sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// How long one Redis command or pipeline may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Reconnection delays grow from the first to the last.
const RECONNECT_DELAYS_MS: [u64; 4] = [50, 100, 250, 500];
/// The subscriber pings Redis when it has heard nothing for this long...
const QUIET_BEFORE_PING: Duration = Duration::from_secs(2);
/// ...and gives the connection up when it has heard nothing for this long.
const QUIET_BEFORE_RECONNECT: Duration = Duration::from_secs(5);
/// How long [`RedisLink::subscribe`] waits for Redis to confirm a subscription.
const SUBSCRIBE_CONFIRM_WAIT: Duration = Duration::from_secs(1);

/// Why the link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The URL is not a Redis URL this link can use.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
}

/// What a channel's messages are handed to. Runs on the subscriber task: it must not block.
pub type Deliver = Box<dyn Fn(Bytes) + Send + Sync>;

/// The node's connection to Redis. Cheap to clone; the background tasks stop when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct RedisLink(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    publications: mpsc::Sender<(Bytes, Bytes)>,
    subscriber: mpsc::UnboundedSender<SubscriberCommand>,
    commands: Arc<OnceLock<ConnectionManager>>,
    up: watch::Receiver<bool>,
    reconnects: watch::Receiver<u64>,
    metrics: ClusterMetrics,
    next_subscription: AtomicU64,
    stop: CancellationToken,
}

/// Sharded pub/sub (Redis 7 and later, and what Redis Cluster needs) or, on an older Redis
/// that does not know `SSUBSCRIBE`, classic pub/sub. Shared by the subscriber, which finds
/// out, and the publisher, which must match.
#[derive(Debug, Default)]
struct PubSubMode {
    classic: AtomicBool,
}

impl PubSubMode {
    fn subscribe(&self) -> &'static [u8] {
        if self.classic.load(Ordering::Relaxed) {
            b"SUBSCRIBE"
        } else {
            b"SSUBSCRIBE"
        }
    }

    fn unsubscribe(&self) -> &'static [u8] {
        if self.classic.load(Ordering::Relaxed) {
            b"UNSUBSCRIBE"
        } else {
            b"SUNSUBSCRIBE"
        }
    }

    fn publish(&self) -> &'static str {
        if self.classic.load(Ordering::Relaxed) {
            "PUBLISH"
        } else {
            "SPUBLISH"
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where the subscriber connects, and as whom.
#[derive(Debug, Clone)]
struct Endpoint {
    address: String,
    username: Option<String>,
    password: Option<String>,
}

enum SubscriberCommand {
    Subscribe {
        id: u64,
        channel: Bytes,
        deliver: Deliver,
        confirmed: oneshot::Sender<()>,
    },
    Unsubscribe {
        id: u64,
        channel: Bytes,
    },
}

/// A channel subscription; dropping it unsubscribes.
#[derive(Debug)]
pub struct ChannelGuard {
    id: u64,
    channel: Bytes,
    subscriber: mpsc::UnboundedSender<SubscriberCommand>,
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        let _ = self.subscriber.send(SubscriberCommand::Unsubscribe {
            id: self.id,
            channel: self.channel.clone(),
        });
    }
}

impl RedisLink {
    /// Starts linking to the Redis at `url` in the background: returns at once, whether or
    /// not Redis is reachable now.
    pub fn start(url: &str, metrics: ClusterMetrics) -> Result<Self, LinkError> {
        let info = url
            .into_connection_info()
            .map_err(|error| LinkError::InvalidUrl(error.to_string()))?;
        let endpoint = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Endpoint {
                address: format!("{host}:{port}"),
                username: info.redis_settings().username().map(str::to_owned),
                password: info.redis_settings().password().map(str::to_owned),
            },
            _ => {
                return Err(LinkError::InvalidUrl(
                    "only redis://host:port URLs are supported (no TLS or Unix sockets yet)".into(),
                ));
            }
        };
        let client =
            redis::Client::open(info).map_err(|error| LinkError::InvalidUrl(error.to_string()))?;

        let stop = CancellationToken::new();
        let commands = Arc::new(OnceLock::new());
        let (up_sender, up) = watch::channel(false);
        let (reconnect_sender, reconnects) = watch::channel(0);
        let (publications, publication_queue) = mpsc::channel(PUBLISH_QUEUE);
        let (subscriber, subscriber_commands) = mpsc::unbounded_channel();
        let mode = Arc::new(PubSubMode::default());

        tokio::spawn(connect_commands(
            client,
            commands.clone(),
            mode.clone(),
            stop.clone(),
        ));
        tokio::spawn(publish_loop(
            publication_queue,
            commands.clone(),
            mode.clone(),
            metrics.clone(),
            stop.clone(),
        ));
        tokio::spawn(
            Subscriber {
                endpoint,
                commands: subscriber_commands,
                channels: HashMap::new(),
                waiters: HashMap::new(),
                connected: false,
                mode,
                up: up_sender,
                reconnects: reconnect_sender,
                metrics: metrics.clone(),
            }
            .run(stop.clone()),
        );
        Ok(Self(Arc::new(Inner {
            publications,
            subscriber,
            commands,
            up,
            reconnects,
            metrics,
            next_subscription: AtomicU64::new(1),
            stop,
        })))
    }

    /// Queues `payload` for the sharded channel `channel`. Never waits: when the queue is
    /// full or Redis is down the message is dropped and counted.
    pub fn publish(&self, channel: Bytes, payload: Bytes) {
        if self.0.publications.try_send((channel, payload)).is_err() {
            self.0.metrics.publish_dropped.inc();
        }
    }

    /// Hands every message on `channel` to `deliver` until the guard is dropped. Waits (a
    /// bounded time) for Redis to confirm, so a message published after this returns is
    /// received; if Redis is down, returns at once and subscribes when it is back (and
    /// [`RedisLink::reconnects`] then changes).
    pub async fn subscribe(&self, channel: Bytes, deliver: Deliver) -> ChannelGuard {
        let id = self.0.next_subscription.fetch_add(1, Ordering::Relaxed);
        let (confirmed, confirmation) = oneshot::channel();
        let _ = self.0.subscriber.send(SubscriberCommand::Subscribe {
            id,
            channel: channel.clone(),
            deliver,
            confirmed,
        });
        let _ = tokio::time::timeout(SUBSCRIBE_CONFIRM_WAIT, confirmation).await;
        ChannelGuard {
            id,
            channel,
            subscriber: self.0.subscriber.clone(),
        }
    }

    /// A command connection (it reconnects by itself), once one was ever established.
    /// Calls on it should be bounded with [`RedisLink::command_timeout`].
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.0.commands.get().cloned()
    }

    /// How long a caller should give one command before falling back.
    pub fn command_timeout(&self) -> Duration {
        COMMAND_TIMEOUT
    }

    /// Whether the subscriber is connected (what `/readyz` and the `redis_up` gauge say).
    pub fn is_up(&self) -> bool {
        *self.0.up.borrow()
    }

    /// Counts the subscriber's (re)connections; changes each time messages may have been
    /// missed and every channel was subscribed again.
    pub fn reconnects(&self) -> watch::Receiver<u64> {
        self.0.reconnects.clone()
    }

    /// Stops the background tasks now (they also stop when the last clone is dropped).
    pub fn close(&self) {
        self.0.stop.cancel();
    }
}

/// Establishes the command connection, retrying until Redis answers once; from then on the
/// connection manager reconnects by itself. Finds out on the way whether this Redis has
/// sharded pub/sub, before anything is published.
async fn connect_commands(
    client: redis::Client,
    commands: Arc<OnceLock<ConnectionManager>>,
    mode: Arc<PubSubMode>,
    stop: CancellationToken,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let mut attempt = 0;
    loop {
        let connect = client.get_connection_manager_with_config(config.clone());
        tokio::select! {
            () = stop.cancelled() => return,
            result = connect => match result {
                Ok(mut manager) => {
                    let probe = redis::cmd("SPUBLISH")
                        .arg("lectern-probe")
                        .arg("")
                        .query_async::<i64>(&mut manager)
                        .await;
                    if let Err(error) = probe
                        && error.to_string().contains("unknown command")
                    {
                        mode.classic.store(true, Ordering::Relaxed);
                    }
                    let _ = commands.set(manager);
                    return;
                }
                Err(error) => {
                    if attempt == 0 {
                        tracing::warn!(%error, "Redis is not reachable yet; retrying in the background");
                    }
                }
            },
        }
        let delay = RECONNECT_DELAYS_MS[attempt.min(RECONNECT_DELAYS_MS.len() - 1)];
        attempt += 1;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(delay)) => {}
        }
    }
}

/// Sends queued publications, as many per pipeline as are waiting.
async fn publish_loop(
    mut queue: mpsc::Receiver<(Bytes, Bytes)>,
    commands: Arc<OnceLock<ConnectionManager>>,
    mode: Arc<PubSubMode>,
    metrics: ClusterMetrics,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            received = queue.recv_many(&mut batch, PUBLISH_BATCH) => {
                if received == 0 {
                    return;
                }
            }
        }
        let count = batch.len() as u64;
        let Some(mut connection) = commands.get().cloned() else {
            metrics.publish_dropped.inc_by(count);
            batch.clear();
            continue;
        };
        let mut pipeline = redis::pipe();
        for (channel, payload) in batch.drain(..) {
            pipeline
                .cmd(mode.publish())
                .arg(channel.as_ref())
                .arg(payload.as_ref())
                .ignore();
        }
        let sent =
            tokio::time::timeout(COMMAND_TIMEOUT, pipeline.query_async::<()>(&mut connection))
                .await;
        match sent {
            Ok(Ok(())) => {
                metrics.published.inc_by(count);
                if failing {
                    tracing::info!("publishing to Redis again");
                    failing = false;
                }
            }
            Ok(Err(error)) if error.to_string().contains("unknown command") => {
                // An older Redis: the subscriber finds out too when it subscribes.
                mode.classic.store(true, Ordering::Relaxed);
                metrics.publish_dropped.inc_by(count);
            }
            Ok(Err(_)) | Err(_) => {
                metrics.publish_dropped.inc_by(count);
                if !failing {
                    tracing::warn!(
                        "publishing to Redis failed; messages dropped until it is back (other nodes repair the gap)"
                    );
                    failing = true;
                }
            }
        }
    }
}

/// The subscriber connection and the channels it carries.
struct Subscriber {
    endpoint: Endpoint,
    commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    /// Deliveries per channel (by subscription id).
    channels: HashMap<Bytes, Vec<(u64, Deliver)>>,
    /// Subscriptions waiting for Redis to confirm their channel.
    waiters: HashMap<Bytes, Vec<oneshot::Sender<()>>>,
    /// Whether a connection is set up (subscriptions go to Redis now, not on reconnect).
    connected: bool,
    mode: Arc<PubSubMode>,
    up: watch::Sender<bool>,
    reconnects: watch::Sender<u64>,
    metrics: ClusterMetrics,
}

/// Why a subscriber connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnectionLost {
    #[error(transparent)]
    Resp(#[from] RespError),
    #[error("connecting timed out")]
    ConnectTimeout,
    #[error("no answer from Redis")]
    Silent,
    #[error("Redis refused: {0}")]
    Refused(String),
    #[error("the link was closed")]
    Stopped,
}

impl Subscriber {
    async fn run(mut self, stop: CancellationToken) {
        let mut attempt = 0usize;
        loop {
            let result = self.connect_and_serve(&stop).await;
            self.connected = false;
            // Their confirmations will not come; they are subscribed on reconnect.
            self.waiters.clear();
            let was_up = *self.up.borrow();
            self.up.send_replace(false);
            self.metrics.redis_up.set(0);
            match result {
                Err(ConnectionLost::Stopped) => return,
                Err(error) if was_up || attempt == 0 => {
                    tracing::warn!(%error, "Redis link down; this node serves its own clients until it is back");
                }
                Err(_) => {}
                Ok(()) => {}
            }
            if was_up {
                attempt = 0;
            }
            let delay = RECONNECT_DELAYS_MS[attempt.min(RECONNECT_DELAYS_MS.len() - 1)];
            attempt += 1;
            // Keep taking subscriptions while disconnected: they are made on reconnect.
            let wait = tokio::time::sleep(Duration::from_millis(delay));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = &mut wait => break,
                    command = self.commands.recv() => match command {
                        Some(command) => { self.apply(command); }
                        None => return,
                    },
                }
            }
        }
    }

    /// Records a (un)subscription; returns the command to send to Redis, if any.
    fn apply(&mut self, command: SubscriberCommand) -> Option<Vec<u8>> {
        match command {
            SubscriberCommand::Subscribe {
                id,
                channel,
                deliver,
                confirmed,
            } => {
                let list = self.channels.entry(channel.clone()).or_default();
                list.push((id, deliver));
                if list.len() > 1 || !self.connected {
                    // Already subscribed, or subscribed on reconnect: nothing to wait for.
                    let _ = confirmed.send(());
                    return None;
                }
                self.waiters
                    .entry(channel.clone())
                    .or_default()
                    .push(confirmed);
                Some(resp::command(&[self.mode.subscribe(), &channel]))
            }
            SubscriberCommand::Unsubscribe { id, channel } => {
                let list = self.channels.get_mut(&channel)?;
                list.retain(|(existing, _)| *existing != id);
                if !list.is_empty() {
                    return None;
                }
                self.channels.remove(&channel);
                Some(resp::command(&[self.mode.unsubscribe(), &channel]))
            }
        }
    }

    async fn connect_and_serve(&mut self, stop: &CancellationToken) -> Result<(), ConnectionLost> {
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.endpoint.address))
                .await
                .map_err(|_| ConnectionLost::ConnectTimeout)?
                .map_err(RespError::Io)?;
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);

        if let Some(password) = &self.endpoint.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(username) = &self.endpoint.username {
                auth.push(username.as_bytes());
            }
            auth.push(password.as_bytes());
            write
                .write_all(&resp::command(&auth))
                .await
                .map_err(RespError::Io)?;
            let reply = tokio::time::timeout(COMMAND_TIMEOUT, resp::read_value(&mut read))
                .await
                .map_err(|_| ConnectionLost::Silent)??;
            if let Value::Error(message) = reply {
                return Err(ConnectionLost::Refused(message));
            }
        }

        // Every channel at once, then a PING: its answer comes after every confirmation,
        // so when it arrives all subscriptions are live and rooms may ask for what they
        // missed.
        let mut setup = Vec::new();
        for channel in self.channels.keys() {
            setup.extend(resp::command(&[self.mode.subscribe(), channel]));
        }
        setup.extend(resp::command(&[b"PING"]));
        write.write_all(&setup).await.map_err(RespError::Io)?;
        self.connected = true;
        let mut ready = false;

        let mut last_heard = Instant::now();
        let mut pinged = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Err(ConnectionLost::Stopped),
                value = resp::read_value(&mut read) => {
                    let value = value?;
                    last_heard = Instant::now();
                    pinged = false;
                    if self.handle(value)? && !ready {
                        ready = true;
                        self.up.send_replace(true);
                        self.metrics.redis_up.set(1);
                        self.reconnects.send_modify(|count| *count += 1);
                        tracing::info!(channels = self.channels.len(), "Redis link up");
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { return Err(ConnectionLost::Stopped) };
                    if let Some(bytes) = self.apply(command) {
                        write.write_all(&bytes).await.map_err(RespError::Io)?;
                    }
                }
                _ = tick.tick() => {
                    let quiet = last_heard.elapsed();
                    if quiet >= QUIET_BEFORE_RECONNECT {
                        return Err(ConnectionLost::Silent);
                    }
                    if quiet >= QUIET_BEFORE_PING && !pinged {
                        pinged = true;
                        write.write_all(&resp::command(&[b"PING"])).await.map_err(RespError::Io)?;
                    }
                }
            }
        }
    }

    /// Handles one value from Redis; true for a PING answer.
    fn handle(&mut self, value: Value) -> Result<bool, ConnectionLost> {
        let items = match value {
            Value::Array(Some(items)) => items,
            Value::Error(message) => {
                if message.contains("unknown command") && !self.mode.classic.load(Ordering::Relaxed)
                {
                    tracing::warn!(
                        "this Redis has no sharded pub/sub (Redis 7+); using classic pub/sub, which Redis Cluster broadcasts to every shard"
                    );
                    self.mode.classic.store(true, Ordering::Relaxed);
                }
                return Err(ConnectionLost::Refused(message));
            }
            // Before the first subscription the connection answers PING as usual; once
            // subscribed, as a pushed ["pong", ""].
            Value::Simple(reply) => return Ok(reply == "PONG"),
            _ => return Ok(false),
        };
        let mut items = items.into_iter();
        let Some(Value::Bulk(Some(kind))) = items.next() else {
            return Ok(false);
        };
        match kind.as_ref() {
            b"smessage" | b"message" => {
                let (Some(Value::Bulk(Some(channel))), Some(Value::Bulk(Some(payload)))) =
                    (items.next(), items.next())
                else {
                    return Ok(false);
                };
                self.metrics.received.inc();
                for (_, deliver) in self.channels.get(&channel).into_iter().flatten() {
                    deliver(payload.clone());
                }
                Ok(false)
            }
            b"ssubscribe" | b"subscribe" => {
                if let Some(Value::Bulk(Some(channel))) = items.next() {
                    for waiter in self.waiters.remove(&channel).into_iter().flatten() {
                        let _ = waiter.send(());
                    }
                }
                Ok(false)
            }
            b"pong" => Ok(true),
            _ => Ok(false),
        }
    }
}
