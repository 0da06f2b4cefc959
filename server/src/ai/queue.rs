//! Who generates next: at most N generations at once on this node, and the jobs waiting for
//! one served round-robin across classrooms, oldest first within a classroom. A classroom
//! with twenty jobs waiting delays another classroom's first job by at most one turn.
//!
//! Two layers:
//! - [`FairQueue`], the order alone (who is next, where each job stands): pure, no I/O, no
//!   clock, unit-tested by itself.
//! - [`Scheduler`], which hands out [`Slot`]s in that order. A slot is an RAII permit:
//!   however a generation ends (done, failed, cancelled, panicked), dropping its slot hands
//!   it to the next job in line.
//!
//! Why not `tokio::sync::Semaphore`: it serves waiters in one global FIFO, which is
//! exactly the starvation this module exists to prevent (three busy accounts queue dozens of
//! jobs, and another class's first question waits behind all of them).
//!
//! A job takes its place in line when it is accepted (so a full line is refused at once with
//! `429 ai_queue_full`, and its position is known from the start), prepares (retrieval,
//! prompt) while it waits, and asks for its slot only right before it calls the model. A
//! job answered from the cache leaves the line without ever taking a slot.
//!
//! Every waiting job is told its place whenever it changes (a job ahead was served, left,
//! or another classroom joined the rotation), so it can show it in the session's job feed
//! without anyone polling.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Waiting jobs in the order they will be served: classrooms take turns (round-robin), and
/// each classroom's own jobs go oldest first (FIFO).
#[derive(Debug)]
pub(crate) struct FairQueue<C, J> {
    /// Classrooms with at least one waiting job, in the order of their next turn.
    turns: VecDeque<C>,
    /// Each such classroom's waiting jobs, oldest first.
    waiting: HashMap<C, VecDeque<J>>,
    /// The classroom of every waiting job.
    class_of: HashMap<J, C>,
}

impl<C, J> Default for FairQueue<C, J> {
    fn default() -> Self {
        Self {
            turns: VecDeque::new(),
            waiting: HashMap::new(),
            class_of: HashMap::new(),
        }
    }
}

impl<C: Clone + Eq + Hash, J: Clone + Eq + Hash> FairQueue<C, J> {
    /// Jobs waiting in all classrooms.
    pub(crate) fn len(&self) -> usize {
        self.class_of.len()
    }

    /// Jobs waiting in `class`.
    pub(crate) fn waiting_in(&self, class: &C) -> usize {
        self.waiting.get(class).map_or(0, VecDeque::len)
    }

    /// Puts `job` at the end of `class`'s line; a classroom new to the queue takes its turn
    /// after every classroom already waiting. A job already waiting stays where it is.
    pub(crate) fn enqueue(&mut self, class: C, job: J) {
        if self.class_of.contains_key(&job) {
            return;
        }
        self.class_of.insert(job.clone(), class.clone());
        let line = self.waiting.entry(class.clone()).or_default();
        if line.is_empty() {
            self.turns.push_back(class);
        }
        line.push_back(job);
    }

    /// The next job to serve: the oldest of the classroom whose turn it is. That classroom,
    /// if it has more waiting, goes to the back of the turns.
    pub(crate) fn next(&mut self) -> Option<(C, J)> {
        let class = self.turns.pop_front()?;
        let line = self.waiting.get_mut(&class)?;
        let job = line.pop_front()?;
        if line.is_empty() {
            self.waiting.remove(&class);
        } else {
            self.turns.push_back(class.clone());
        }
        self.class_of.remove(&job);
        Some((class, job))
    }

    /// Where `job` stands: 1 if it is served next, `None` if it is not waiting.
    pub(crate) fn position(&self, job: &J) -> Option<usize> {
        let class = self.class_of.get(job)?;
        let depth = self
            .waiting
            .get(class)?
            .iter()
            .position(|other| other == job)?;
        let turn = self.turns.iter().position(|other| other == class)?;
        // Served before it: `depth` full rounds (each classroom gives at most one job per
        // round), then, in its own round, the classrooms whose turn comes before its own.
        let mut ahead = 0;
        for (index, other) in self.turns.iter().enumerate() {
            let waiting = self.waiting_in(other);
            ahead += waiting.min(depth);
            if index < turn && waiting > depth {
                ahead += 1;
            }
        }
        Some(ahead + 1)
    }

    /// Every waiting job in the order it will be served (the first is served next), as
    /// [`FairQueue::next`] would hand them out if nobody joined or left meanwhile.
    pub(crate) fn order(&self) -> Vec<&J> {
        let mut order = Vec::with_capacity(self.len());
        // Round `depth` serves the `depth`-th job of every classroom that has one, in turn
        // order.
        for depth in 0.. {
            let before = order.len();
            for class in &self.turns {
                if let Some(job) = self.waiting.get(class).and_then(|line| line.get(depth)) {
                    order.push(job);
                }
            }
            if order.len() == before {
                break;
            }
        }
        order
    }

    /// Takes `job` out of the line (cancelled, or no longer needs a slot); whether it was in it.
    pub(crate) fn remove(&mut self, job: &J) -> bool {
        let Some(class) = self.class_of.remove(job) else {
            return false;
        };
        if let Some(line) = self.waiting.get_mut(&class) {
            line.retain(|other| other != job);
            if line.is_empty() {
                self.waiting.remove(&class);
                self.turns.retain(|other| other != &class);
            }
        }
        true
    }
}

/// A classroom's line is full: the job was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull {
    /// The most jobs one classroom may have waiting.
    pub limit: usize,
}

/// Hands out generation slots in [`FairQueue`] order. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Scheduler(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// Most generations at once.
    max_running: usize,
    /// Most jobs one classroom may have waiting.
    max_waiting_per_class: usize,
    /// Jobs waiting, for `/metrics`; set under the lock whenever the line changes.
    waiting: Gauge,
    // A std mutex: a few map operations under it, never held across an await (and never
    // while a `Slot` is dropped, since dropping one takes it).
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Slots handed out and not yet returned.
    running: usize,
    /// Jobs waiting for a slot, by job id and classroom id.
    order: FairQueue<String, String>,
    /// How to reach each waiting job.
    waiters: HashMap<String, Waiter>,
}

/// The scheduler's side of a waiting job.
#[derive(Debug)]
struct Waiter {
    /// Hands the job its slot.
    slot: oneshot::Sender<Slot>,
    /// The job's place in line (1 = next), updated whenever it changes. Dropped with
    /// `slot`, which is how the job learns it is no longer in line.
    position: watch::Sender<usize>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After the line changed: the gauge, and every waiting job's place in it.
    fn line_changed(&self, state: &State) {
        self.waiting
            .set(i64::try_from(state.order.len()).unwrap_or(i64::MAX));
        for (index, job) in state.order.order().into_iter().enumerate() {
            if let Some(waiter) = state.waiters.get(job) {
                // Only real moves wake the job (it writes each one into a document).
                waiter.position.send_if_modified(|position| {
                    let moved = *position != index + 1;
                    *position = index + 1;
                    moved
                });
            }
        }
    }

    /// A slot came back: it goes to the next job in line that is still waiting, or is free.
    fn release(self: &Arc<Self>) {
        let mut state = self.state();
        let mut handed_on = false;
        while let Some((_, job)) = state.order.next() {
            let Some(waiter) = state.waiters.remove(&job) else {
                continue;
            };
            match waiter.slot.send(Slot(Some(self.clone()))) {
                Ok(()) => {
                    handed_on = true;
                    break;
                }
                // That job stopped waiting: disarm the slot (its drop would take the lock
                // held here) and offer it to the next one.
                Err(mut slot) => slot.0 = None,
            }
        }
        if !handed_on {
            state.running = state.running.saturating_sub(1);
        }
        self.line_changed(&state);
    }

    /// Takes `job` out of the line, if it is in it.
    fn remove(&self, job: &str) {
        let mut state = self.state();
        state.order.remove(&job.to_owned());
        state.waiters.remove(job);
        self.line_changed(&state);
    }
}

impl Scheduler {
    /// At most `max_running` generations at once (at least 1); at most
    /// `max_waiting_per_class` jobs of one classroom waiting; `waiting` counts those waiting.
    pub(crate) fn new(max_running: usize, max_waiting_per_class: usize, waiting: Gauge) -> Self {
        Self(Arc::new(Shared {
            max_running: max_running.max(1),
            max_waiting_per_class,
            waiting,
            state: Mutex::new(State::default()),
        }))
    }

    /// Takes a place for `job` of `class`: a slot at once if one is free, else a place at
    /// the end of the classroom's line; refused if that line is full.
    pub(crate) fn join(&self, class: &str, job: &str) -> Result<Ticket, QueueFull> {
        let shared = &self.0;
        let mut state = shared.state();
        let grant = if state.running < shared.max_running {
            // A free slot means nobody waits: slots are handed on as they come back.
            state.running += 1;
            Grant::Ready(Slot(Some(shared.clone())))
        } else {
            if state.order.waiting_in(&class.to_owned()) >= shared.max_waiting_per_class {
                return Err(QueueFull {
                    limit: shared.max_waiting_per_class,
                });
            }
            let (slot, slot_receiver) = oneshot::channel();
            // The real place is set just below, with everyone else's.
            let (position, position_receiver) = watch::channel(0);
            state.order.enqueue(class.to_owned(), job.to_owned());
            state
                .waiters
                .insert(job.to_owned(), Waiter { slot, position });
            shared.line_changed(&state);
            Grant::Waiting {
                slot: slot_receiver,
                position: position_receiver,
            }
        };
        Ok(Ticket {
            shared: shared.clone(),
            job: job.to_owned(),
            grant: Mutex::new(Some(grant)),
        })
    }

    /// Where `job` stands in line: 1 is next; `None` if it is not waiting.
    pub(crate) fn position(&self, job: &str) -> Option<usize> {
        self.0.state().order.position(&job.to_owned())
    }

    /// Takes `job` out of the line at once (it was cancelled).
    pub(crate) fn remove(&self, job: &str) {
        self.0.remove(job);
    }
}

/// A job's place: a slot already, or a place in line. Dropping it leaves the line (and
/// returns a slot it was handed but never took).
#[derive(Debug)]
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    job: String,
    /// Taken by [`Ticket::slot`] or [`Ticket::leave`].
    grant: Mutex<Option<Grant>>,
}

#[derive(Debug)]
enum Grant {
    /// A slot was free when the job joined.
    Ready(Slot),
    /// The job waits in line.
    Waiting {
        /// Receives the slot when the job's turn comes.
        slot: oneshot::Receiver<Slot>,
        /// The job's place in line; closed once it has left the line.
        position: watch::Receiver<usize>,
    },
}

impl Ticket {
    /// Waits for this job's slot; `None` if `cancel` fires first, the job was taken out
    /// of line, or the slot was already taken or given up.
    ///
    /// While the job waits, `moved` is called with its place in line (1 = next): once at
    /// first, then whenever it changes. It is never called when a slot was free at once.
    pub(crate) async fn slot<F: Future<Output = ()>>(
        &self,
        cancel: &CancellationToken,
        mut moved: impl FnMut(usize) -> F,
    ) -> Option<Slot> {
        let grant = self
            .grant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let (mut slot, mut position) = match grant {
            Grant::Ready(slot) => return Some(slot),
            Grant::Waiting { slot, position } => (slot, position),
        };
        let mut in_line = true;
        loop {
            // Closed already: handed its slot (or taken out) before it could be told.
            in_line = in_line && position.has_changed().is_ok();
            if in_line {
                let current = *position.borrow_and_update();
                moved(current).await;
            }
            // If `cancel` wins, the receiver is dropped on return: a slot sent meanwhile is
            // dropped with it and so handed on.
            tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                slot = &mut slot => return slot.ok(),
                // Closed: the job left the line (its slot is on its way, or it was taken
                // out); only the slot receiver is left to wait for.
                changed = position.changed(), if in_line => in_line = changed.is_ok(),
            }
        }
    }

    /// Gives up the place without generating (a cached answer, or the job ended early).
    pub(crate) fn leave(&self) {
        self.shared.remove(&self.job);
        // Dropped outside the scheduler's lock: dropping a slot takes it.
        let grant = self
            .grant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(grant);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Permission to generate; dropping it hands the slot to the next job in line.
#[derive(Debug)]
pub(crate) struct Slot(Option<Arc<Shared>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(jobs: &[(&'static str, &'static str)]) -> FairQueue<&'static str, &'static str> {
        let mut queue = FairQueue::default();
        for &(class, job) in jobs {
            queue.enqueue(class, job);
        }
        queue
    }

    fn drain(queue: &mut FairQueue<&'static str, &'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.next().map(|(_, job)| job)).collect()
    }

    #[test]
    fn classrooms_take_turns_and_each_serves_its_oldest_first() {
        let mut queue = queue(&[
            ("a", "a1"),
            ("a", "a2"),
            ("a", "a3"),
            ("b", "b1"),
            ("c", "c1"),
            ("b", "b2"),
        ]);
        assert_eq!(queue.len(), 6);
        assert_eq!(
            drain(&mut queue),
            ["a1", "b1", "c1", "a2", "b2", "a3"],
            "round-robin across classrooms, FIFO within one"
        );
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.next(), None);
    }

    #[test]
    fn a_busy_classroom_delays_a_newcomer_by_one_turn_at_most() {
        let mut queue = FairQueue::default();
        for index in 0..20 {
            queue.enqueue("busy", format!("busy{index}"));
        }
        queue.enqueue("quiet", "quiet1".to_owned());
        assert_eq!(queue.position(&"quiet1".to_owned()), Some(2));
        assert_eq!(queue.next().map(|(class, _)| class), Some("busy"));
        assert_eq!(
            queue.next(),
            Some(("quiet", "quiet1".to_owned())),
            "served second, not 21st"
        );
    }

    #[test]
    fn positions_match_the_order_of_service_and_move_as_it_is_served() {
        let mut queue = queue(&[
            ("a", "a1"),
            ("a", "a2"),
            ("a", "a3"),
            ("b", "b1"),
            ("c", "c1"),
            ("b", "b2"),
        ]);
        let order = ["a1", "b1", "c1", "a2", "b2", "a3"];
        for (index, job) in order.iter().enumerate() {
            assert_eq!(queue.position(job), Some(index + 1), "{job}");
        }
        assert_eq!(queue.position(&"unknown"), None);
        queue.next();
        for (index, job) in order[1..].iter().enumerate() {
            assert_eq!(
                queue.position(job),
                Some(index + 1),
                "{job} after one served"
            );
        }
        assert_eq!(queue.position(&"a1"), None, "served jobs are not waiting");
        assert_eq!(queue.order(), order[1..].iter().collect::<Vec<_>>());
        assert!(FairQueue::<&str, &str>::default().order().is_empty());
    }

    #[test]
    fn removing_a_job_closes_the_gap_and_an_emptied_classroom_loses_its_turn() {
        let mut queue = queue(&[("a", "a1"), ("a", "a2"), ("b", "b1"), ("c", "c1")]);
        assert!(queue.remove(&"b1"));
        assert!(!queue.remove(&"b1"), "removing twice is a no-op");
        assert_eq!(queue.waiting_in(&"b"), 0);
        assert_eq!(queue.position(&"c1"), Some(2));
        assert!(queue.remove(&"a1"));
        assert_eq!(queue.position(&"a2"), Some(1), "a keeps its turn");
        assert_eq!(drain(&mut queue), ["a2", "c1"]);
    }

    #[test]
    fn a_classroom_that_comes_back_queues_behind_those_waiting() {
        let mut queue = queue(&[("a", "a1"), ("b", "b1")]);
        assert_eq!(queue.next(), Some(("a", "a1")));
        queue.enqueue("a", "a2");
        queue.enqueue("c", "c1");
        assert_eq!(drain(&mut queue), ["b1", "a2", "c1"]);
    }

    #[test]
    fn enqueueing_a_waiting_job_again_keeps_its_place() {
        let mut queue = queue(&[("a", "a1"), ("b", "b1")]);
        queue.enqueue("b", "a1");
        assert_eq!(queue.len(), 2);
        assert_eq!(drain(&mut queue), ["a1", "b1"]);
    }

    fn granted(ticket: &Ticket) -> bool {
        matches!(
            *ticket.grant.lock().unwrap_or_else(PoisonError::into_inner),
            Some(Grant::Ready(_))
        )
    }

    #[tokio::test]
    async fn slots_go_to_waiting_jobs_in_fair_order_as_they_come_back() {
        let scheduler = Scheduler::new(1, 10, Gauge::default());
        let never = CancellationToken::new();
        let a0 = scheduler.join("a", "a0").expect("joined");
        assert!(granted(&a0), "a free slot is taken at once");
        let a1 = scheduler.join("a", "a1").expect("joined");
        let a2 = scheduler.join("a", "a2").expect("joined");
        let b1 = scheduler.join("b", "b1").expect("joined");
        assert_eq!(scheduler.0.waiting.get(), 3);
        assert_eq!(scheduler.position("b1"), Some(2));

        let slot = a0.slot(&never, |_| async {}).await.expect("slot");
        drop(slot);
        let slot = a1.slot(&never, |_| async {}).await.expect("a1 is next");
        assert_eq!(scheduler.position("b1"), Some(1));
        assert_eq!(scheduler.position("a2"), Some(2));
        drop(slot);
        let slot = b1
            .slot(&never, |_| async {})
            .await
            .expect("then b1, before a2");
        drop(slot);
        let slot = a2.slot(&never, |_| async {}).await.expect("a2 last");
        drop(slot);
        assert_eq!(scheduler.0.state().running, 0, "every slot came back");
    }

    /// The job feed shows a waiting job's place: it is told at once, and again each time the
    /// line moves (a job ahead served or taken out), until its slot comes.
    #[tokio::test]
    async fn a_waiting_job_is_told_its_place_whenever_it_moves() {
        let scheduler = Scheduler::new(1, 10, Gauge::default());
        let never = CancellationToken::new();
        let a0 = scheduler.join("a", "a0").expect("joined");
        let a1 = scheduler.join("a", "a1").expect("joined");
        let a2 = scheduler.join("a", "a2").expect("joined");
        let (told, mut places) = tokio::sync::mpsc::unbounded_channel();
        let waiting = tokio::spawn({
            let never = never.clone();
            async move {
                let slot = a2
                    .slot(&never, |place| {
                        told.send(place).expect("test listening");
                        async {}
                    })
                    .await;
                (a2, slot.is_some())
            }
        });
        assert_eq!(places.recv().await, Some(2), "told at once");
        // Another classroom joins the rotation and is served before a2's second round.
        let b1 = scheduler.join("b", "b1").expect("joined");
        assert_eq!(places.recv().await, Some(3));
        // a0 ends: a1 generates, a2 moves up.
        let mut moved = false;
        let running = a0
            .slot(&never, |_| {
                moved = true;
                async {}
            })
            .await
            .expect("a free slot");
        assert!(!moved, "a job that never waited is never told a place");
        drop(running);
        let running = a1.slot(&never, |_| async {}).await.expect("a1 next");
        assert_eq!(places.recv().await, Some(2));
        // b1 is cancelled: a2 is next.
        scheduler.remove("b1");
        assert_eq!(places.recv().await, Some(1));
        drop(running);
        let (a2, granted) = waiting.await.expect("waiting task");
        assert!(granted, "a2 got the slot");
        assert_eq!(places.recv().await, None, "not told anything once served");
        drop((a2, b1));
        assert_eq!(scheduler.0.state().running, 0);
    }

    #[tokio::test]
    async fn a_full_line_refuses_and_running_jobs_do_not_count() {
        let scheduler = Scheduler::new(1, 2, Gauge::default());
        let _running = scheduler.join("a", "a0").expect("runs");
        let _a1 = scheduler.join("a", "a1").expect("waits");
        let _a2 = scheduler.join("a", "a2").expect("waits");
        assert_eq!(
            scheduler.join("a", "a3").map(|_| ()),
            Err(QueueFull { limit: 2 })
        );
        assert!(
            scheduler.join("b", "b1").is_ok(),
            "the bound is per classroom"
        );
    }

    #[tokio::test]
    async fn leaving_or_being_cancelled_never_loses_a_slot() {
        let scheduler = Scheduler::new(1, 10, Gauge::default());
        let never = CancellationToken::new();
        let a0 = scheduler.join("a", "a0").expect("joined");
        let a1 = scheduler.join("a", "a1").expect("joined");
        let a2 = scheduler.join("a", "a2").expect("joined");
        let a3 = scheduler.join("a", "a3").expect("joined");

        // a1 stops waiting (cancelled) while in line: it leaves at once.
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(a1.slot(&cancel, |_| async {}).await.is_none());
        scheduler.remove("a1");
        assert_eq!(scheduler.position("a2"), Some(1));

        // a2 is handed the slot but gives up before taking it: a3 gets it.
        let slot = a0.slot(&never, |_| async {}).await.expect("slot");
        drop(slot);
        assert_eq!(scheduler.position("a2"), None, "a2 was handed the slot");
        a2.leave();
        let slot = a3
            .slot(&never, |_| async {})
            .await
            .expect("a3 gets the slot a2 gave up");
        drop(slot);
        drop(a1);
        drop(a2);
        drop(a3);
        assert_eq!(scheduler.0.state().running, 0);
        assert_eq!(scheduler.0.waiting.get(), 0);
        assert!(
            scheduler
                .join("b", "b1")
                .is_ok_and(|ticket| granted(&ticket))
        );
    }

    #[tokio::test]
    async fn a_job_removed_from_line_is_skipped_when_slots_come_back() {
        let scheduler = Scheduler::new(1, 10, Gauge::default());
        let never = CancellationToken::new();
        let a0 = scheduler.join("a", "a0").expect("joined");
        let b1 = scheduler.join("b", "b1").expect("joined");
        let c1 = scheduler.join("c", "c1").expect("joined");
        scheduler.remove("b1");
        assert_eq!(scheduler.position("c1"), Some(1));
        drop(a0.slot(&never, |_| async {}).await);
        assert!(
            b1.slot(&never, |_| async {}).await.is_none(),
            "b1 was taken out of line"
        );
        assert!(c1.slot(&never, |_| async {}).await.is_some());
    }
}
