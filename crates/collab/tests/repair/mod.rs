//! Rooms on several nodes over a transport that loses messages, as Redis pub/sub does: a
//! lost update, a lost last update, a lost deletion, a node that subscribes late and an
//! outage ended by a reconnection are all repaired; and a room that only relays other
//! nodes' traffic still unloads.

use std::sync::atomic::AtomicUsize;

use lectern_collab::fanout::{FanoutError, FanoutMessage, FanoutPayload, Subscription};
use tokio::sync::watch;

use super::*;

/// `LocalFanout` that loses what the test tells it to.
#[derive(Debug)]
struct LossyFanout {
    inner: LocalFanout,
    /// Document updates still to lose.
    lose_updates: AtomicUsize,
    /// While set, every message is lost.
    outage: AtomicBool,
    /// While set, answers to sync requests are lost (as if their nodes were gone).
    lose_replies: AtomicBool,
    /// Bumped to tell rooms the transport reconnected.
    reconnects: watch::Sender<u64>,
}

impl LossyFanout {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: LocalFanout::new(),
            lose_updates: AtomicUsize::new(0),
            outage: AtomicBool::new(false),
            lose_replies: AtomicBool::new(false),
            reconnects: watch::channel(0).0,
        })
    }

    fn lose_next_updates(&self, count: usize) {
        self.lose_updates.store(count, Ordering::SeqCst);
    }

    fn end_outage(&self) {
        self.outage.store(false, Ordering::SeqCst);
        self.reconnects.send_modify(|count| *count += 1);
    }
}

#[async_trait]
impl Fanout for LossyFanout {
    async fn subscribe(&self, doc: &DocId, node: NodeId) -> Result<Subscription, FanoutError> {
        let subscription = self.inner.subscribe(doc, node).await?;
        Ok(subscription.with_resync(self.reconnects.subscribe()))
    }

    fn publish(&self, doc: &DocId, message: FanoutMessage) -> Result<(), FanoutError> {
        if self.outage.load(Ordering::SeqCst)
            || (self.lose_replies.load(Ordering::SeqCst)
                && matches!(message.payload, FanoutPayload::SyncReply { .. }))
        {
            return Ok(());
        }
        if matches!(message.payload, FanoutPayload::Update { .. })
            && self
                .lose_updates
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
        {
            return Ok(());
        }
        self.inner.publish(doc, message)
    }
}

fn node_on(
    store: Arc<dyn Store>,
    fanout: Arc<LossyFanout>,
    id: u64,
    sync_interval: Option<Duration>,
) -> (Rooms, CollabMetrics) {
    let metrics = CollabMetrics::default();
    let config = RoomConfig {
        cluster_sync_interval: sync_interval,
        ..config()
    };
    let rooms = Rooms::new(store, fanout, NodeId(id), config, metrics.clone());
    (rooms, metrics)
}

impl Client {
    async fn delete(&self, index: u32, len: u32) {
        let update = {
            let body = self.doc.get_or_insert_text("body");
            let mut txn = self.doc.transact_mut();
            body.remove_range(&mut txn, index, len);
            txn.encode_update_v1()
        };
        self.send(protocol::encode_update(&update)).await;
    }
}

#[tokio::test]
async fn a_lost_update_is_repaired_when_the_next_one_shows_the_gap() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let fanout = LossyFanout::new();
    let (first, _) = node_on(store.clone(), fanout.clone(), 1, None);
    let (second, metrics) = node_on(store, fanout.clone(), 2, None);
    let writer = Client::join(&first, "gap").await;
    let mut reader = Client::join(&second, "gap").await;
    reader.receive().await; // its sync step 2

    fanout.lose_next_updates(1);
    writer.insert(0, "lost ").await;
    writer.insert(5, "found").await;
    reader.receive_until_text("lost found").await;
    assert!(metrics.fanout_gaps.get() >= 1, "the gap was noticed");
}

#[tokio::test]
async fn a_lost_update_is_read_back_from_the_store_when_no_node_answers() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let fanout = LossyFanout::new();
    let (first, _) = node_on(store.clone(), fanout.clone(), 1, None);
    let (second, _) = node_on(store, fanout.clone(), 2, None);
    let writer = Client::join(&first, "orphan").await;
    let mut reader = Client::join(&second, "orphan").await;
    reader.receive().await;

    fanout.lose_replies.store(true, Ordering::SeqCst);
    fanout.lose_next_updates(1);
    writer.insert(0, "stored ").await;
    writer.insert(7, "anyway").await;
    reader.receive_until_text("stored anyway").await;
}

#[tokio::test]
async fn a_lost_last_update_is_repaired_by_the_periodic_check() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let fanout = LossyFanout::new();
    let every = Some(Duration::from_millis(20));
    let (first, _) = node_on(store.clone(), fanout.clone(), 1, every);
    let (second, _) = node_on(store, fanout.clone(), 2, every);
    let writer = Client::join(&first, "quiet").await;
    let mut reader = Client::join(&second, "quiet").await;
    reader.receive().await;

    fanout.lose_next_updates(1);
    writer.insert(0, "the only edit").await;
    reader.receive_until_text("the only edit").await;
}

#[tokio::test]
async fn a_lost_deletion_is_repaired_though_state_vectors_agree() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let fanout = LossyFanout::new();
    let every = Some(Duration::from_millis(20));
    let (first, _) = node_on(store.clone(), fanout.clone(), 1, every);
    let (second, _) = node_on(store, fanout.clone(), 2, every);
    let writer = Client::join(&first, "deleted").await;
    let mut reader = Client::join(&second, "deleted").await;
    reader.receive().await;
    writer.insert(0, "keep this, not that").await;
    reader.receive_until_text("keep this, not that").await;

    // A deletion adds nothing to a state vector: only the update numbers reveal its loss.
    fanout.lose_next_updates(1);
    writer.delete(9, 10).await;
    reader.receive_until_text("keep this").await;
}

#[tokio::test]
async fn a_node_that_subscribes_late_gets_what_it_missed() {
    // Separate stores: the second node's store lacks what the first accepted, as when an
    // update is published between another node's load and its subscription.
    let fanout = LossyFanout::new();
    let (first, _) = node_on(Arc::new(MemoryStore::new()), fanout.clone(), 1, None);
    let (second, _) = node_on(Arc::new(MemoryStore::new()), fanout.clone(), 2, None);
    let early = Client::join(&first, "late").await;
    early.insert(0, "written before").await;
    let mut late = Client::join(&second, "late").await;
    late.receive_until_text("written before").await;
}

#[tokio::test]
async fn after_an_outage_a_reconnection_reconverges_both_ways() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let fanout = LossyFanout::new();
    let (first, _) = node_on(store.clone(), fanout.clone(), 1, None);
    let (second, _) = node_on(store.clone(), fanout.clone(), 2, None);
    let mut one = Client::join(&first, "outage").await;
    let mut two = Client::join(&second, "outage").await;
    one.receive().await;
    two.receive().await;

    fanout.outage.store(true, Ordering::SeqCst);
    one.insert(0, "A").await;
    two.insert(0, "B").await;
    // Both edits are accepted (stored) while nothing crosses between the nodes.
    let id = DocId::new("outage").expect("doc id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.load(&id).await.expect("load").updates.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "edits never stored");
        tokio::task::yield_now().await;
    }
    fanout.end_outage();
    while one.text().len() < 2 {
        one.receive().await;
    }
    two.receive_until_text(&one.text()).await;
}

#[tokio::test]
async fn a_room_that_only_relays_other_nodes_still_unloads() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let fanout = LossyFanout::new();
    let (first, _) = node_on(store.clone(), fanout.clone(), 1, None);
    let (second, metrics) = node_on(store, fanout.clone(), 2, None);
    let writer = Client::join(&first, "busy").await;
    let visitor = Client::join(&second, "busy").await;
    visitor.membership.leave().await;

    // Edits keep flowing from the first node, faster than the grace period (50 ms).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut typed = 0;
    while metrics.rooms_loaded.get() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relaying room never unloaded"
        );
        writer.insert(typed, "x").await;
        typed += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
