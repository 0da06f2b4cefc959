//! A user's inbox as a document, `user/{user_id}/inbox`, so it arrives live over the
//! WebSocket (and with the same stock Yjs client) like every other document.
//!
//! Shape: one root array, [`ITEMS`], of maps, newest last, at most [`MAX_ITEMS`] (the
//! oldest are deleted in the edit that adds one). Each map holds `id`, `kind`, `title`,
//! `body?`, `classroom_id`, `session_id?`, `doc_id?`, `created_at` (Unix ms) and `read`.
//! Items are Yjs maps rather than plain objects so that marking one read changes one key
//! instead of replacing the entry. Only the server writes it, through its room; only its
//! user reads it (`access::decide`, `DocFacts::Inbox`).

use std::collections::HashSet;
use std::sync::Arc;

use lectern_collab::{DocId, RoomError, Rooms, SERVER_AUTHOR};
use yrs::{Any, Array, ArrayRef, Map, MapPrelim, MapRef, Out, TransactionMut, WriteTxn};

/// The name of the root array.
pub(crate) const ITEMS: &str = "items";

/// The most items an inbox keeps; older ones are deleted.
pub(crate) const MAX_ITEMS: u32 = 200;

const PREFIX: &str = "user/";
const SUFFIX: &str = "/inbox";

/// The inbox document of user `user_id`.
pub(crate) fn doc_id_of(user_id: &str) -> String {
    format!("{PREFIX}{user_id}{SUFFIX}")
}

/// The user whose inbox `doc_id` is, if it is one.
pub(crate) fn owner_of(doc_id: &str) -> Option<&str> {
    let user_id = doc_id.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (!user_id.is_empty() && !user_id.contains('/')).then_some(user_id)
}

/// What an item is about (its `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    SessionStarted,
    MaterialReady,
    MaterialFailed,
    AiJobFinished,
    Handout,
}

impl Kind {
    /// The wire spelling (docs/api.md, the SDK's `InboxKind`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::SessionStarted => "session_started",
            Self::MaterialReady => "material_ready",
            Self::MaterialFailed => "material_failed",
            Self::AiJobFinished => "ai_job_finished",
            Self::Handout => "handout",
        }
    }
}

/// One notification, before it gets its id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) kind: Kind,
    pub(crate) title: String,
    pub(crate) body: Option<String>,
    pub(crate) classroom_id: String,
    pub(crate) session_id: Option<String>,
    pub(crate) doc_id: Option<String>,
}

impl Item {
    /// The item as a Yjs map, with `id`, `created_at` (Unix ms) and `read: false`.
    fn prelim(&self, id: &str, created_at_ms: u64) -> MapPrelim {
        let mut fields: Vec<(&str, Any)> = vec![
            ("id", Any::from(id)),
            ("kind", Any::from(self.kind.as_str())),
            ("title", Any::from(self.title.as_str())),
            ("classroom_id", Any::from(self.classroom_id.as_str())),
            // A float, as Yjs numbers are: an integer would reach JavaScript as a BigInt.
            ("created_at", Any::from(created_at_ms as f64)),
            ("read", Any::Bool(false)),
        ];
        for (key, value) in [
            ("body", &self.body),
            ("session_id", &self.session_id),
            ("doc_id", &self.doc_id),
        ] {
            if let Some(value) = value {
                fields.push((key, Any::from(value.as_str())));
            }
        }
        fields.into_iter().collect()
    }
}

/// Which items to mark read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    All,
    Ids(HashSet<String>),
}

/// Adds `item` at the end of `items`, deleting the oldest beyond [`MAX_ITEMS`].
fn push(txn: &mut TransactionMut<'_>, item: MapPrelim) {
    let items = txn.get_or_insert_array(ITEMS);
    items.push_back(txn, item);
    let len = items.len(txn);
    if len > MAX_ITEMS {
        items.remove_range(txn, 0, len - MAX_ITEMS);
    }
}

/// Sets `read: true` on the selected items that are not read yet (so marking twice
/// changes nothing).
fn mark_read(txn: &mut TransactionMut<'_>, selection: &Selection) {
    let items: ArrayRef = txn.get_or_insert_array(ITEMS);
    let maps: Vec<MapRef> = items
        .iter(&*txn)
        .filter_map(|value| match value {
            Out::YMap(map) => Some(map),
            _ => None,
        })
        .collect();
    for map in maps {
        let selected = match selection {
            Selection::All => true,
            Selection::Ids(ids) => match map.get(txn, "id") {
                Some(Out::Any(Any::String(id))) => ids.contains(id.as_ref()),
                _ => false,
            },
        };
        let read = matches!(map.get(txn, "read"), Some(Out::Any(Any::Bool(true))));
        if selected && !read {
            map.insert(txn, "read", true);
        }
    }
}

/// Writes inboxes through their rooms (loading a room when needed; it unloads again
/// after its grace period).
#[derive(Debug, Clone)]
pub(crate) struct Inboxes {
    rooms: Rooms,
}

impl Inboxes {
    pub(crate) fn new(rooms: Rooms) -> Self {
        Self { rooms }
    }

    /// Adds `item` to `user_id`'s inbox.
    pub(crate) async fn add(&self, user_id: &str, item: &Item) -> Result<(), InboxError> {
        let doc = inbox_doc(user_id)?;
        let id = uuid::Uuid::new_v4().to_string();
        let created_at_ms = now_ms();
        let item = item.clone();
        self.rooms
            .edit(&doc, SERVER_AUTHOR, move |txn| {
                push(txn, item.prelim(&id, created_at_ms));
            })
            .await?;
        Ok(())
    }

    /// Marks the selected items of `user_id`'s inbox read.
    pub(crate) async fn mark_read(
        &self,
        user_id: &str,
        selection: Selection,
    ) -> Result<(), InboxError> {
        let doc = inbox_doc(user_id)?;
        let selection = Arc::new(selection);
        self.rooms
            .edit(&doc, SERVER_AUTHOR, move |txn| mark_read(txn, &selection))
            .await?;
        Ok(())
    }
}

/// Why an inbox could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InboxError {
    /// The user id makes no valid document id.
    #[error("no inbox document for user id {0:?}")]
    InvalidUser(String),
    /// The room could not be loaded or written.
    #[error("inbox room unavailable")]
    Room(#[from] RoomError),
}

fn inbox_doc(user_id: &str) -> Result<DocId, InboxError> {
    DocId::new(&doc_id_of(user_id))
        .ok()
        .filter(|doc| owner_of(doc.as_str()) == Some(user_id))
        .ok_or_else(|| InboxError::InvalidUser(user_id.to_owned()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::types::ToJson;
    use yrs::{Doc, ReadTxn, Transact};

    #[test]
    fn inbox_ids_round_trip_and_nothing_else_parses_as_one() {
        assert_eq!(owner_of(&doc_id_of("u-1")), Some("u-1"));
        assert_eq!(owner_of("user//inbox"), None);
        assert_eq!(owner_of("user/a/b/inbox"), None);
        assert_eq!(owner_of("user/a/inbox/x"), None);
        assert_eq!(owner_of("classroom/c/materials"), None);
        assert!(
            inbox_doc("a/b").is_err(),
            "a slash would name someone else's"
        );
    }

    fn item(title: &str) -> Item {
        Item {
            kind: Kind::Handout,
            title: title.into(),
            body: None,
            classroom_id: "c".into(),
            session_id: Some("s".into()),
            doc_id: Some("d".into()),
        }
    }

    fn items_json(doc: &Doc) -> serde_json::Value {
        let txn = doc.transact();
        let items = txn.get_array(ITEMS).expect("items");
        serde_json::to_value(items.to_json(&txn)).expect("json")
    }

    #[test]
    fn only_the_newest_items_are_kept_in_the_same_edit() {
        let doc = Doc::new();
        for n in 0..MAX_ITEMS + 5 {
            let mut txn = doc.transact_mut();
            push(&mut txn, item(&n.to_string()).prelim(&n.to_string(), 1));
        }
        let items = items_json(&doc);
        let items = items.as_array().expect("array");
        assert_eq!(items.len(), MAX_ITEMS as usize);
        assert_eq!(items[0]["title"], "5", "the five oldest are gone");
        assert_eq!(items[items.len() - 1]["title"], (MAX_ITEMS + 4).to_string());
        assert_eq!(
            items[0],
            serde_json::json!({"id": "5", "kind": "handout", "title": "5", "classroom_id": "c",
                "session_id": "s", "doc_id": "d", "created_at": 1, "read": false})
        );
    }

    #[test]
    fn marking_read_sets_only_the_selected_items() {
        let doc = Doc::new();
        for id in ["a", "b", "c"] {
            push(&mut doc.transact_mut(), item(id).prelim(id, 1));
        }
        let ids = Selection::Ids(["a".to_owned(), "c".to_owned(), "zz".to_owned()].into());
        mark_read(&mut doc.transact_mut(), &ids);
        let read: Vec<bool> = items_json(&doc)
            .as_array()
            .expect("array")
            .iter()
            .map(|item| item["read"].as_bool().expect("read"))
            .collect();
        assert_eq!(read, [true, false, true]);
        mark_read(&mut doc.transact_mut(), &Selection::All);
        assert!(
            items_json(&doc)
                .as_array()
                .expect("array")
                .iter()
                .all(|item| item["read"] == true)
        );
    }
}
