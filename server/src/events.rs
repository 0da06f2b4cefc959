//! What happened in a classroom, told to the parts that pass it on: webhooks (to the
//! school's other systems) and notifications (to people).
//!
//! Handlers and workers call [`Events::emit`] *after* the change is committed; each
//! [`EventSink`] records the event durably itself (a webhook outbox row, an inbox entry)
//! before `emit` returns, so an event emitted before a crash is not lost. A sink that fails
//! logs the failure; the change that caused the event stands either way.

use std::sync::Arc;

use async_trait::async_trait;

/// One thing that happened. Ids are the database's; every event names its classroom,
/// because webhooks and notifications are per classroom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A live session started.
    SessionStarted {
        classroom_id: String,
        session_id: String,
        started_by: String,
    },
    /// A live session ended.
    SessionEnded {
        classroom_id: String,
        session_id: String,
    },
    /// A material finished ingestion and is searchable.
    MaterialReady {
        classroom_id: String,
        material_id: String,
        file_name: String,
        uploaded_by: String,
    },
    /// A material could not be ingested.
    MaterialFailed {
        classroom_id: String,
        material_id: String,
        file_name: String,
        uploaded_by: String,
        reason: String,
    },
    /// An AI job ended (done, failed or cancelled).
    AiJobFinished {
        classroom_id: String,
        session_id: String,
        job_id: String,
        kind: String,
        requested_by: String,
        status: String,
        doc_id: String,
    },
    /// Someone joined a classroom.
    MemberJoined {
        classroom_id: String,
        user_id: String,
        role: String,
    },
    /// A document changed (debounced by whoever emits it).
    DocumentUpdated {
        classroom_id: String,
        doc_id: String,
    },
    /// Faculty handed a document out to students.
    HandedOut {
        classroom_id: String,
        session_id: String,
        /// The document handed out (the template the copies are made from).
        doc_id: String,
        /// Each student's copy, by user id.
        copies: Vec<(String, String)>,
    },
}

impl Event {
    /// The event's name on the wire (webhook `event` field, docs/api.md).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Event::SessionStarted { .. } => "session.started",
            Event::SessionEnded { .. } => "session.ended",
            Event::MaterialReady { .. } => "material.ready",
            Event::MaterialFailed { .. } => "material.failed",
            Event::AiJobFinished { .. } => "ai_job.finished",
            Event::MemberJoined { .. } => "member.joined",
            Event::DocumentUpdated { .. } => "document.updated",
            Event::HandedOut { .. } => "handout.given",
        }
    }

    /// The classroom the event happened in.
    pub(crate) fn classroom_id(&self) -> &str {
        match self {
            Event::SessionStarted { classroom_id, .. }
            | Event::SessionEnded { classroom_id, .. }
            | Event::MaterialReady { classroom_id, .. }
            | Event::MaterialFailed { classroom_id, .. }
            | Event::AiJobFinished { classroom_id, .. }
            | Event::MemberJoined { classroom_id, .. }
            | Event::DocumentUpdated { classroom_id, .. }
            | Event::HandedOut { classroom_id, .. } => classroom_id,
        }
    }
}

/// Something that passes events on. `record` stores what it needs durably before it
/// returns and handles (logs) its own failures.
#[async_trait]
pub(crate) trait EventSink: Send + Sync + std::fmt::Debug + 'static {
    async fn record(&self, event: &Event);
}

/// The sinks events go to. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Events {
    sinks: Arc<Vec<Arc<dyn EventSink>>>,
}

impl Events {
    pub(crate) fn new(sinks: Vec<Arc<dyn EventSink>>) -> Self {
        Self {
            sinks: Arc::new(sinks),
        }
    }

    /// Tells every sink, in order.
    pub(crate) async fn emit(&self, event: Event) {
        tracing::debug!(
            event = event.name(),
            classroom = event.classroom_id(),
            "event"
        );
        for sink in self.sinks.iter() {
            sink.record(&event).await;
        }
    }
}
