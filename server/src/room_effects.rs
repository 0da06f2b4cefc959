//! What REST changes do to open rooms: the seam between the API handlers (which change
//! sessions, memberships and forks in the database) and the rooms and sockets those
//! changes affect.
//!
//! Handlers call these after the database change has committed, and before answering, so
//! a client that got its response can rely on the effect having been applied on this node;
//! other nodes apply it when the cluster event reaches them (within milliseconds while
//! Redis is up). Every method is safe to call again with the same arguments.

use std::collections::HashMap;
use std::sync::Arc;

use lectern_collab::{Access, AccessChange, CloseReason, DocId, RoomError, Rooms, SERVER_AUTHOR};
use lectern_db::sessions::{DocKind, SessionState, session_doc_id};
use lectern_db::{Accounts, Database, DbError};
use yrs::{Any, Map, MapPrelim, MapRef, TransactionMut, WriteTxn};

use crate::access::AccessError;
use crate::api::dto::Focus;
use crate::auth::{Origin, Principal};
use crate::cluster::{Cluster, ClusterEvent};
use crate::credentials;

/// The root map of a session's `lectern` document (`session/{id}/lectern`), the one place
/// server-owned state lives: `state`, `focus`, `handouts`, `ai_jobs` and `ai_clients`. Only the server writes
/// that document (`access::decide` gives every socket read access at most), so what clients
/// read there cannot have been forged by a classmate.
pub const LECTERN_MAP: &str = "lectern";
/// Key of the follow-the-teacher focus (`{doc_id, section?}`) in [`LECTERN_MAP`].
pub const FOCUS: &str = "focus";
/// Key of the session's state (`"live"`, `"locked"` or `"ended"`) in [`LECTERN_MAP`].
pub const STATE: &str = "state";
/// Key of the handouts in [`LECTERN_MAP`]: a map from each handed-out template's doc id to
/// when it was (last) handed out, in unix seconds.
pub const HANDOUTS: &str = "handouts";

/// The server-owned document of session `session_id`.
pub fn lectern_doc(session_id: &str) -> Result<DocId, RoomEffectsError> {
    doc_id(&session_doc_id(session_id, DocKind::Lectern))
}

/// Why an effect on open rooms could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RoomEffectsError {
    /// Reading what the effect needs from the database failed.
    #[error("database access for a room effect failed")]
    Database(#[from] DbError),
    /// Deciding a user's new access failed.
    #[error("deciding access failed")]
    Access(#[from] AccessError),
    /// A room could not be loaded or written.
    #[error("room unavailable")]
    Room(#[from] RoomError),
    /// A stored document id is not a valid room name.
    #[error("invalid document id {0:?}")]
    InvalidDocId(String),
}

/// Applies REST-side changes to open rooms. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomEffects {
    /// The rooms of this node.
    rooms: Rooms,
    /// The database the changes were made in.
    database: Database,
    /// Other nodes, which apply the same effects to their rooms.
    cluster: Cluster,
}

impl RoomEffects {
    /// Effects on `rooms`, reading from `database`, published to the other nodes of
    /// `cluster`.
    pub(crate) fn new(rooms: Rooms, database: Database, cluster: Cluster) -> Self {
        Self {
            rooms,
            database,
            cluster,
        }
    }

    /// A fork of `template_doc_id` was registered as `fork_doc_id`: give it the
    /// template's content. Called once per new fork by `POST /sessions/{id}/handouts`.
    pub async fn fork_created(
        &self,
        template_doc_id: &str,
        fork_doc_id: &str,
    ) -> Result<(), RoomEffectsError> {
        let state = self.rooms.encode_state(&doc_id(template_doc_id)?).await?;
        self.rooms
            .apply_update(&doc_id(fork_doc_id)?, state, SERVER_AUTHOR)
            .await?;
        Ok(())
    }

    /// Who may do what on `doc_ids` may have changed (a session was locked or unlocked, a
    /// member left or was removed from the classroom): re-decide the access of every open
    /// socket on them. Sockets that lost access are closed with 4403; the others are
    /// downgraded or upgraded in place.
    pub async fn access_changed(&self, doc_ids: Vec<String>) -> Result<(), RoomEffectsError> {
        let result = self.apply_access_changed(doc_ids.clone()).await;
        self.cluster
            .publish(ClusterEvent::AccessChanged { doc_ids });
        result
    }

    /// [`RoomEffects::access_changed`] on this node's rooms only.
    pub(crate) async fn apply_access_changed(
        &self,
        doc_ids: Vec<String>,
    ) -> Result<(), RoomEffectsError> {
        let accounts = Accounts::new(self.database.clone());
        for doc in doc_ids {
            let doc = doc_id(&doc)?;
            let mut changes = Vec::new();
            for tag in self.rooms.users(&doc).await {
                let Some(user_id) = credentials::user_id_of_tag(&tag) else {
                    continue; // anonymous and document-token access do not depend on classes
                };
                let access = match accounts.user_by_id(user_id).await? {
                    Some(user) => {
                        let principal = Principal {
                            subject: user.id,
                            role: user.role,
                            origin: Origin::Local,
                            docs: None,
                            expires_at: 0,
                            session: None,
                        };
                        crate::access::resolve(&self.database, &principal, doc.as_str()).await?
                    }
                    None => None,
                };
                changes.push((tag, to_change(access)));
            }
            if !changes.is_empty() {
                self.rooms.change_access(&doc, changes).await;
            }
        }
        Ok(())
    }

    /// Re-decides the access of every open socket on this node. After a Redis outage:
    /// access changes other nodes published meanwhile never arrived (sockets of an ended
    /// session become read-only, as reopening them would make them).
    pub(crate) async fn recheck_open_rooms(&self) {
        let docs: Vec<String> = self
            .rooms
            .loaded_docs()
            .into_iter()
            .map(|doc| doc.as_str().to_owned())
            .collect();
        if let Err(error) = self.apply_access_changed(docs).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "re-deciding access after a Redis outage failed"
            );
        }
    }

    /// Login session `family_id` was revoked (logout, or refresh-token reuse): close every
    /// socket opened with its access tokens, in every room of every node, with 4401.
    pub async fn session_revoked(&self, family_id: &str) {
        self.apply_login_revoked(family_id).await;
        self.cluster.publish(ClusterEvent::LoginRevoked {
            family_id: family_id.to_owned(),
        });
    }

    /// [`RoomEffects::session_revoked`] on this node's rooms only.
    pub(crate) async fn apply_login_revoked(&self, family_id: &str) {
        self.rooms
            .close_session(family_id, CloseReason::Unauthenticated)
            .await;
    }

    /// The session owning `doc_ids` (its own documents and its forks) has ended: every
    /// socket on them is closed with 4410; reopening gives read-only access for review.
    pub async fn session_ended(&self, doc_ids: Vec<String>) -> Result<(), RoomEffectsError> {
        let result = self.apply_session_ended(doc_ids.clone()).await;
        self.cluster.publish(ClusterEvent::SessionEnded { doc_ids });
        result
    }

    /// [`RoomEffects::session_ended`] on this node's rooms only.
    pub(crate) async fn apply_session_ended(
        &self,
        doc_ids: Vec<String>,
    ) -> Result<(), RoomEffectsError> {
        for doc in doc_ids {
            let doc = doc_id(&doc)?;
            let changes: Vec<_> = self
                .rooms
                .users(&doc)
                .await
                .into_iter()
                .map(|tag| (tag, AccessChange::Close(CloseReason::SessionEnded)))
                .collect();
            self.rooms.change_access(&doc, changes).await;
        }
        Ok(())
    }

    /// Faculty of session `session_id` moved the follow-the-teacher focus to `focus`: it is
    /// written into the session's `lectern` document (root map `lectern`, key `focus`:
    /// `{doc_id, section}`), which every member reads live and nobody else can write. Never
    /// into the documents students edit: there a classmate could overwrite it.
    pub async fn focus_changed(
        &self,
        session_id: &str,
        focus: &Focus,
    ) -> Result<(), RoomEffectsError> {
        let mut value = HashMap::from([("doc_id".to_owned(), Any::from(focus.doc_id.as_str()))]);
        if let Some(section) = &focus.section {
            value.insert("section".to_owned(), Any::from(section.as_str()));
        }
        let value = Any::Map(Arc::new(value));
        self.edit_lectern(session_id, move |txn, map| {
            map.insert(txn, FOCUS, value.clone());
        })
        .await
    }

    /// Session `session_id` started, or was locked, unlocked or ended: its state is written
    /// into the session's `lectern` document (key `state`), so every open page learns of it
    /// at once. A lock changes what a socket may do without closing it, so without this a
    /// page would have to ask the API again and again. Called after the sockets' access
    /// changed (lock, unlock) and before they are closed (end), so a client that reads
    /// `locked` is already read-only, and one that reads `ended` got it before the close.
    pub async fn state_changed(
        &self,
        session_id: &str,
        state: SessionState,
    ) -> Result<(), RoomEffectsError> {
        self.edit_lectern(session_id, move |txn, map| {
            map.insert(txn, STATE, state.as_str());
        })
        .await
    }

    /// Template `template_doc_id` was handed out in session `session_id` at `at` (unix
    /// seconds): written into the session's `lectern` document (key `handouts`, a map from
    /// template doc id to time), so students' pages know to fetch their new forks.
    pub async fn handed_out(
        &self,
        session_id: &str,
        template_doc_id: &str,
        at: i64,
    ) -> Result<(), RoomEffectsError> {
        let template = template_doc_id.to_owned();
        self.edit_lectern(session_id, move |txn, map| {
            let handouts = match map.get(txn, HANDOUTS) {
                Some(yrs::Out::YMap(handouts)) => handouts,
                _ => map.insert(txn, HANDOUTS, MapPrelim::default()),
            };
            // A float, as Yjs numbers are: an integer would reach JavaScript as a BigInt.
            handouts.insert(txn, template.as_str(), at as f64);
        })
        .await
    }

    /// Runs `edit` on the root map of session `session_id`'s `lectern` document, through
    /// its room (persisted, then broadcast to every member).
    async fn edit_lectern(
        &self,
        session_id: &str,
        edit: impl Fn(&mut TransactionMut<'_>, &MapRef) + Send + Sync + 'static,
    ) -> Result<(), RoomEffectsError> {
        self.rooms
            .edit(&lectern_doc(session_id)?, SERVER_AUTHOR, move |txn| {
                let map = txn.get_or_insert_map(LECTERN_MAP);
                edit(txn, &map);
            })
            .await?;
        Ok(())
    }
}

/// What a socket's new access means for it.
fn to_change(access: Option<Access>) -> AccessChange {
    match access {
        Some(access) => AccessChange::Set(access),
        None => AccessChange::Close(CloseReason::Forbidden),
    }
}

fn doc_id(name: &str) -> Result<DocId, RoomEffectsError> {
    DocId::new(name).map_err(|_| RoomEffectsError::InvalidDocId(name.to_owned()))
}
