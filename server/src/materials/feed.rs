//! The materials feed: a classroom's upload and ingestion progress as a shared document,
//! so every member sees `queued → extracting → embedding → ready` live over the same
//! WebSocket (and with the same stock Yjs client) they already use.
//!
//! Document `classroom/{classroom_id}/materials` holds one map, `materials`, keyed by
//! material id; each value is a plain object with the material's public fields (see
//! [`entry`]). Only the server writes it (members get read access, see `access.rs`); the
//! database stays the source of truth, so a failed feed write is logged and skipped.

use std::collections::HashMap;

use lectern_collab::{DocId, Rooms, SERVER_AUTHOR};
use lectern_db::materials::Material;
use yrs::{Any, Map, WriteTxn};

/// The name of the map inside the feed document.
pub const FEED_MAP: &str = "materials";

const PREFIX: &str = "classroom/";
const SUFFIX: &str = "/materials";

/// The feed document of classroom `classroom_id`.
pub fn doc_id_of(classroom_id: &str) -> String {
    format!("{PREFIX}{classroom_id}{SUFFIX}")
}

/// The classroom whose feed `doc_id` is, if it is one.
pub fn classroom_of(doc_id: &str) -> Option<&str> {
    let classroom_id = doc_id.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (!classroom_id.is_empty() && !classroom_id.contains('/')).then_some(classroom_id)
}

/// What the feed shows of a material.
fn entry(material: &Material) -> Any {
    let mut fields = HashMap::from([
        ("id".to_owned(), Any::from(material.id.as_str())),
        (
            "file_name".to_owned(),
            Any::from(material.file_name.as_str()),
        ),
        ("format".to_owned(), Any::from(material.format.as_str())),
        ("status".to_owned(), Any::from(material.status.as_str())),
        (
            "progress".to_owned(),
            Any::from(f64::from(material.progress)),
        ),
        (
            "chunk_count".to_owned(),
            Any::from(f64::from(material.chunk_count)),
        ),
        (
            "uploaded_by".to_owned(),
            Any::from(material.uploaded_by.as_str()),
        ),
        // f64 is exact for sizes and times far beyond anything real.
        (
            "size_bytes".to_owned(),
            Any::from(material.size_bytes as f64),
        ),
        (
            "updated_at".to_owned(),
            Any::from(material.updated_at as f64),
        ),
    ]);
    if let Some(error) = &material.error {
        fields.insert("error".to_owned(), Any::from(error.as_str()));
    }
    Any::from(fields)
}

/// Writes material changes into their classroom's feed document.
#[derive(Debug, Clone)]
pub struct MaterialsFeed {
    rooms: Rooms,
}

impl MaterialsFeed {
    /// A feed written through `rooms`.
    pub fn new(rooms: Rooms) -> Self {
        Self { rooms }
    }

    /// Shows `material`'s current state.
    pub async fn publish(&self, material: &Material) {
        let value = entry(material);
        let key = material.id.clone();
        self.write(&material.classroom_id, move |txn| {
            let map = txn.get_or_insert_map(FEED_MAP);
            map.insert(txn, key.as_str(), value.clone());
        })
        .await;
    }

    /// Removes a deleted material.
    pub async fn remove(&self, classroom_id: &str, material_id: &str) {
        let key = material_id.to_owned();
        self.write(classroom_id, move |txn| {
            let map = txn.get_or_insert_map(FEED_MAP);
            map.remove(txn, key.as_str());
        })
        .await;
    }

    async fn write(
        &self,
        classroom_id: &str,
        edit: impl Fn(&mut yrs::TransactionMut<'_>) + Send + Sync + 'static,
    ) {
        let doc = match DocId::new(&doc_id_of(classroom_id)) {
            Ok(doc) => doc,
            Err(error) => {
                tracing::warn!(%error, classroom_id, "no feed document for this classroom id");
                return;
            }
        };
        if let Err(error) = self.rooms.edit(&doc, SERVER_AUTHOR, edit).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                %doc,
                "materials feed not updated"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_ids_round_trip_and_nothing_else_parses_as_one() {
        assert_eq!(classroom_of(&doc_id_of("c-1")), Some("c-1"));
        assert_eq!(classroom_of("classroom//materials"), None);
        assert_eq!(classroom_of("classroom/a/b/materials"), None);
        assert_eq!(classroom_of("session/s/notes"), None);
        assert_eq!(classroom_of("classroom/c/materials/x"), None);
    }
}
