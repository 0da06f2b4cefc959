//! A connection's outbox: how rooms hand frames to a socket writer without waiting on it.
//!
//! Rooms never await a client. Each socket has one unbounded queue whose *bytes* are
//! capped: a client that stops reading fills its cap and is closed with
//! [`CloseReason::Lagging`] (it reconnects and resyncs, so nothing is lost), instead of
//! slowing the room for everyone else. A close request bypasses the queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use crate::CloseReason;

/// Which of a socket's documents a frame belongs to. A socket serving one document always
/// uses route 0; a multiplexed socket numbers its documents.
pub type Route = u32;

/// One item for the socket writer.
#[derive(Debug)]
pub struct Outbound {
    /// The document the frame belongs to.
    pub route: Route,
    /// An encoded y-sync message, shared with every other receiver.
    pub payload: Bytes,
}

/// A close requested by a room for one route of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    /// The document the close applies to.
    pub route: Route,
    /// Why.
    pub reason: CloseReason,
}

#[derive(Debug)]
struct Shared {
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    closes: Mutex<Vec<CloseRequest>>,
    close_signal: Notify,
}

/// The sending half, held by rooms. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::UnboundedSender<Outbound>,
    shared: Arc<Shared>,
}

/// The receiving half, held by the socket writer.
#[derive(Debug)]
pub struct OutboxReceiver {
    receiver: mpsc::UnboundedReceiver<Outbound>,
    shared: Arc<Shared>,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The socket is gone.
    Closed,
    /// The client is not reading fast enough; it should be closed with `Lagging`.
    Lagging,
}

/// Creates an outbox that holds at most `max_queued_bytes` of unsent frames (one frame is
/// always accepted, however large, so a big initial sync can go out).
pub fn outbox(max_queued_bytes: usize) -> (Outbox, OutboxReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued_bytes: AtomicUsize::new(0),
        max_queued_bytes,
        closes: Mutex::new(Vec::new()),
        close_signal: Notify::new(),
    });
    (
        Outbox {
            sender,
            shared: shared.clone(),
        },
        OutboxReceiver { receiver, shared },
    )
}

impl Outbox {
    /// Queues a frame for `route`.
    pub fn send(&self, route: Route, payload: Bytes) -> Result<(), SendError> {
        let len = payload.len();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > self.shared.max_queued_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(SendError::Lagging);
        }
        self.sender
            .send(Outbound { route, payload })
            .map_err(|_| SendError::Closed)
    }

    /// Asks the writer to close `route` for `reason`, ahead of anything still queued.
    pub fn close(&self, route: Route, reason: CloseReason) {
        self.shared
            .closes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(CloseRequest { route, reason });
        self.shared.close_signal.notify_one();
    }

    /// True once the writer has gone away.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl OutboxReceiver {
    /// Waits for the next frame; `None` when every `Outbox` is dropped.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let item = self.receiver.recv().await?;
        self.mark_sent(&item);
        Some(item)
    }

    /// Takes a frame that is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.receiver.try_recv().ok()?;
        self.mark_sent(&item);
        Some(item)
    }

    /// A handle on this socket's close requests, usable while frames are being received.
    pub fn close_requests(&self) -> CloseRequests {
        CloseRequests {
            shared: self.shared.clone(),
        }
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }

    fn mark_sent(&self, item: &Outbound) {
        self.shared
            .queued_bytes
            .fetch_sub(item.payload.len(), Ordering::Relaxed);
    }
}

/// The close requests rooms made for one socket (held by its writer).
#[derive(Debug, Clone)]
pub struct CloseRequests {
    shared: Arc<Shared>,
}

impl CloseRequests {
    /// Waits until some room asks for a close.
    pub async fn requested(&self) {
        loop {
            // Register interest before checking, so a request made in between is not missed.
            let notified = self.shared.close_signal.notified();
            if !self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Takes the pending close requests.
    pub fn take(&self) -> Vec<CloseRequest> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CloseRequest>> {
        self.shared
            .closes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_queued_bytes_but_always_takes_one_frame() {
        let (outbox, mut receiver) = outbox(10);
        outbox
            .send(0, Bytes::from(vec![0; 64]))
            .expect("first frame");
        assert_eq!(
            outbox.send(0, Bytes::from(vec![0; 1])),
            Err(SendError::Lagging)
        );
        assert_eq!(
            receiver.recv().await.map(|item| item.payload.len()),
            Some(64)
        );
        outbox.send(0, Bytes::from(vec![0; 8])).expect("room again");
        assert_eq!(receiver.queued_bytes(), 8);
    }

    #[tokio::test]
    async fn close_requests_bypass_the_queue() {
        let (outbox, receiver) = outbox(1024);
        outbox.send(0, Bytes::from_static(b"queued")).expect("send");
        outbox.close(0, CloseReason::Lagging);
        let closes = receiver.close_requests();
        closes.requested().await;
        assert_eq!(
            closes.take(),
            vec![CloseRequest {
                route: 0,
                reason: CloseReason::Lagging
            }]
        );
    }

    #[tokio::test]
    async fn reports_a_gone_writer() {
        let (outbox, receiver) = outbox(1024);
        drop(receiver);
        assert!(outbox.is_closed());
        assert_eq!(outbox.send(0, Bytes::new()), Err(SendError::Closed));
    }
}
