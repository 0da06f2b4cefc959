//! Notifications: what happened that concerns *you*, in a live inbox and optionally by
//! email (issue #14).
//!
//! [`NotificationSink`] hears every event ([`crate::events`]) and decides who gets what:
//! a session start goes to every student of the classroom (not the faculty who started
//! it), a material's result to its uploader, an AI job's end to whoever started it, a
//! handout to each student who got a copy (with the copy's doc id). Inbox entries are
//! written before `emit` returns, many inboxes at once (at most [`CONCURRENT_INBOXES`]),
//! so a class of 200 costs the request a few round trips through rooms, not 200; a failed
//! write is logged and never fails the request. Only the node that emitted the event
//! writes (emitting is local), and rooms carry the entry to the user's sockets on every
//! node. Session starts and handouts are also emailed to students who have not opted out,
//! by a background task (`email.rs`).
//!
//! # Layout
//! - this file: the service, the sink and who gets what.
//! - `inbox.rs`: the inbox document (`user/{id}/inbox`): its shape, adding, marking read.
//! - `email.rs`: the SMTP mailer with its bounded queue, and the messages.

pub(crate) mod email;
pub(crate) mod inbox;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use lectern_collab::Rooms;
use lectern_db::classrooms::MemberRole;
use lectern_db::{Classrooms, Database, DbError, Notifications as Settings};

use crate::events::{Event, EventSink};
use email::{Email, EmailSettings, Mailer, Topic};
use inbox::{Inboxes, Item, Kind};

pub(crate) use inbox::{InboxError, Selection};

/// Inboxes written at once for one event.
const CONCURRENT_INBOXES: usize = 16;

/// The notification machinery of one node. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct NotificationService(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    inboxes: Inboxes,
    database: Database,
    /// `None` without `--smtp-url`.
    mailer: Option<Mailer>,
    /// The email task.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl NotificationService {
    /// The service; starts the email task when `email` is configured.
    pub(crate) fn start(
        rooms: Rooms,
        database: Database,
        email: Option<EmailSettings>,
    ) -> anyhow::Result<Self> {
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let mailer = email
            .map(|settings| Mailer::start(settings, &tasks, stop.clone()))
            .transpose()?;
        Ok(Self(Arc::new(Inner {
            inboxes: Inboxes::new(rooms),
            database,
            mailer,
            tasks,
            stop,
        })))
    }

    /// The sink that turns events into inbox entries and emails.
    pub(crate) fn sink(&self) -> Arc<dyn EventSink> {
        Arc::new(NotificationSink(self.clone()))
    }

    /// Marks items of `user_id`'s inbox read.
    pub(crate) async fn mark_read(
        &self,
        user_id: &str,
        selection: Selection,
    ) -> Result<(), InboxError> {
        self.0.inboxes.mark_read(user_id, selection).await
    }

    /// Stops the email task (what is still queued is not sent).
    pub(crate) async fn shutdown(&self) {
        self.0.stop.cancel();
        self.0.tasks.close();
        self.0.tasks.wait().await;
    }

    /// Writes `item` into each of `users`' inboxes, several at once; failures are logged.
    async fn deliver(&self, deliveries: Vec<(String, Item)>) {
        futures_util::stream::iter(deliveries)
            .for_each_concurrent(CONCURRENT_INBOXES, |(user_id, item)| async move {
                if let Err(error) = self.0.inboxes.add(&user_id, &item).await {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        user_id,
                        kind = item.kind.as_str(),
                        "inbox entry not written"
                    );
                }
            })
            .await;
    }

    /// Queues `topic` emails to the students of `classroom_id` who want email and for whom
    /// `wanted` holds.
    async fn email_students(
        &self,
        topic: Topic,
        classroom_id: &str,
        classroom: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<(), DbError> {
        let Some(mailer) = &self.0.mailer else {
            return Ok(());
        };
        let recipients = Settings::new(self.0.database.clone())
            .student_email_recipients(classroom_id)
            .await?;
        for recipient in recipients.iter().filter(|r| wanted(&r.user_id)) {
            match Email::new(topic, classroom, &recipient.display_name, &recipient.email) {
                Some(email) => mailer.enqueue(email),
                None => tracing::warn!(
                    user_id = recipient.user_id,
                    "stored email address does not parse; no email"
                ),
            }
        }
        Ok(())
    }

    /// The classroom's name for titles; its id if it cannot be read (logged).
    async fn classroom_name(&self, classroom_id: &str) -> String {
        match Classrooms::new(self.0.database.clone())
            .get(classroom_id)
            .await
        {
            Ok(Some(classroom)) => classroom.name,
            Ok(None) => classroom_id.to_owned(),
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    classroom_id,
                    "classroom name not read for a notification"
                );
                classroom_id.to_owned()
            }
        }
    }

    /// Who gets what for `event`.
    async fn notify(&self, event: &Event) -> Result<(), DbError> {
        match event {
            Event::SessionStarted {
                classroom_id,
                session_id,
                started_by,
            } => {
                let name = self.classroom_name(classroom_id).await;
                let students: Vec<String> = Classrooms::new(self.0.database.clone())
                    .members(classroom_id)
                    .await?
                    .into_iter()
                    .filter(|member| {
                        member.role == MemberRole::Student && member.user_id != *started_by
                    })
                    .map(|member| member.user_id)
                    .collect();
                let item = Item {
                    kind: Kind::SessionStarted,
                    title: format!("A live session started in {name}"),
                    body: None,
                    classroom_id: classroom_id.clone(),
                    session_id: Some(session_id.clone()),
                    doc_id: None,
                };
                self.deliver(
                    students
                        .into_iter()
                        .map(|user_id| (user_id, item.clone()))
                        .collect(),
                )
                .await;
                self.email_students(Topic::SessionStarted, classroom_id, &name, |user_id| {
                    user_id != started_by
                })
                .await
            }
            Event::MaterialReady {
                classroom_id,
                file_name,
                uploaded_by,
                ..
            } => {
                let name = self.classroom_name(classroom_id).await;
                let item = Item {
                    kind: Kind::MaterialReady,
                    title: format!("{file_name} is ready"),
                    body: Some(format!("It can now be searched and cited in {name}.")),
                    classroom_id: classroom_id.clone(),
                    session_id: None,
                    doc_id: None,
                };
                self.deliver(vec![(uploaded_by.clone(), item)]).await;
                Ok(())
            }
            Event::MaterialFailed {
                classroom_id,
                file_name,
                uploaded_by,
                reason,
                ..
            } => {
                let item = Item {
                    kind: Kind::MaterialFailed,
                    title: format!("{file_name} could not be processed"),
                    body: Some(reason.clone()),
                    classroom_id: classroom_id.clone(),
                    session_id: None,
                    doc_id: None,
                };
                self.deliver(vec![(uploaded_by.clone(), item)]).await;
                Ok(())
            }
            Event::AiJobFinished {
                classroom_id,
                session_id,
                kind,
                requested_by,
                status,
                doc_id,
                ..
            } => {
                let title = match status.as_str() {
                    "done" => format!("Your AI {kind} is ready"),
                    "failed" => format!("Your AI {kind} failed"),
                    "cancelled" => format!("Your AI {kind} was cancelled"),
                    other => format!("Your AI {kind} ended ({other})"),
                };
                let item = Item {
                    kind: Kind::AiJobFinished,
                    title,
                    body: None,
                    classroom_id: classroom_id.clone(),
                    session_id: Some(session_id.clone()),
                    doc_id: (!doc_id.is_empty()).then(|| doc_id.clone()),
                };
                self.deliver(vec![(requested_by.clone(), item)]).await;
                Ok(())
            }
            Event::HandedOut {
                classroom_id,
                session_id,
                copies,
                ..
            } => {
                let name = self.classroom_name(classroom_id).await;
                let deliveries = copies
                    .iter()
                    .map(|(user_id, copy)| {
                        let item = Item {
                            kind: Kind::Handout,
                            title: format!("New handout in {name}"),
                            body: None,
                            classroom_id: classroom_id.clone(),
                            session_id: Some(session_id.clone()),
                            doc_id: Some(copy.clone()),
                        };
                        (user_id.clone(), item)
                    })
                    .collect();
                self.deliver(deliveries).await;
                self.email_students(Topic::Handout, classroom_id, &name, |user_id| {
                    copies.iter().any(|(student, _)| student == user_id)
                })
                .await
            }
            Event::SessionEnded { .. }
            | Event::MemberJoined { .. }
            | Event::DocumentUpdated { .. } => Ok(()),
        }
    }
}

/// Writes events into inboxes (and the email queue).
#[derive(Debug)]
struct NotificationSink(NotificationService);

#[async_trait]
impl EventSink for NotificationSink {
    async fn record(&self, event: &Event) {
        if let Err(error) = self.0.notify(event).await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                event = event.name(),
                classroom = event.classroom_id(),
                "notifications not written"
            );
        }
    }
}
