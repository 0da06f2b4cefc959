//! Semantic search indexes: one in-memory [`VectorIndex`] per classroom, loaded from the
//! database on its first search and kept current as materials become ready or are deleted.
//!
//! At classroom scale (thousands to ~100k chunks) an exact scan over contiguous vectors
//! answers in milliseconds, so there is no approximate index to tune or rebuild.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::RwLock;

use lectern_db::materials::ChunkEmbedding;
use lectern_db::{DbError, Materials};
use lectern_library::{Hit, VectorIndex};

/// One classroom's index; `None` until loaded.
type Slot = Arc<RwLock<Option<VectorIndex>>>;

/// The loaded indexes of this node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SearchIndexes {
    materials: Materials,
    dims: usize,
    // A std mutex: held only to find or insert a slot, never across an await.
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

impl SearchIndexes {
    /// Indexes of `dims`-dimensional vectors, loaded from `materials`.
    pub fn new(materials: Materials, dims: usize) -> Self {
        Self {
            materials,
            dims,
            slots: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn slot(&self, classroom_id: &str) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        slots.entry(classroom_id.to_owned()).or_default().clone()
    }

    fn loaded_slot(&self, classroom_id: &str) -> Option<Slot> {
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        slots.get(classroom_id).cloned()
    }

    /// The `k` chunks of `classroom_id` most similar to `query`, restricted to `materials`
    /// when given. Loads the classroom's index on first use.
    pub async fn search(
        &self,
        classroom_id: &str,
        query: Vec<f32>,
        materials: Option<HashSet<String>>,
        k: usize,
    ) -> Result<Vec<Hit>, DbError> {
        let slot = self.slot(classroom_id);
        if slot.read().await.is_none() {
            let mut index = slot.write().await;
            // Loading under the write lock: a material finishing meanwhile waits in
            // `add_material`, then lands in the loaded index rather than being missed.
            if index.is_none() {
                let embeddings = self.materials.classroom_embeddings(classroom_id).await?;
                *index = Some(build(self.dims, &embeddings));
            }
        }
        let guard = slot.read_owned().await;
        let hits = tokio::task::spawn_blocking(move || match guard.as_ref() {
            Some(index) => index.search(&query, materials.as_ref(), k),
            None => Ok(Vec::new()),
        })
        .await?;
        // The embedder's vectors have the index's dimension and a direction; a refusal
        // here would mean a different model, which finds nothing rather than failing.
        Ok(hits.unwrap_or_else(|error| {
            tracing::warn!(%error, "query vector refused by the index");
            Vec::new()
        }))
    }

    /// A material became ready: add (or replace) its vectors if its classroom's index is
    /// loaded. An index loaded later reads them from the database.
    pub async fn add_material(
        &self,
        classroom_id: &str,
        material_id: &str,
        vectors: &[(i32, Vec<f32>)],
    ) {
        let Some(slot) = self.loaded_slot(classroom_id) else {
            return;
        };
        let mut index = slot.write().await;
        if let Some(index) = index.as_mut() {
            index.remove_document(material_id);
            for (ordinal, vector) in vectors {
                insert(index, material_id, *ordinal, vector);
            }
        }
    }

    /// Drops `classroom_id`'s index: the next search loads it from the database.
    pub fn forget(&self, classroom_id: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(classroom_id);
    }

    /// A material was deleted: drop its vectors.
    pub async fn remove_material(&self, classroom_id: &str, material_id: &str) {
        let Some(slot) = self.loaded_slot(classroom_id) else {
            return;
        };
        if let Some(index) = slot.write().await.as_mut() {
            index.remove_document(material_id);
        }
    }
}

fn build(dims: usize, embeddings: &[ChunkEmbedding]) -> VectorIndex {
    let mut index = VectorIndex::new(dims);
    for embedding in embeddings {
        insert(
            &mut index,
            &embedding.material_id,
            embedding.ordinal,
            &embedding.vector,
        );
    }
    index
}

/// Adds one vector; one the index refuses (another model's dimension, a zero vector) is
/// skipped with a warning rather than failing the whole classroom's search.
fn insert(index: &mut VectorIndex, material_id: &str, ordinal: i32, vector: &[f32]) {
    if let Err(error) = index.insert(material_id, i64::from(ordinal), vector) {
        tracing::warn!(
            material_id,
            ordinal,
            %error,
            "stored embedding skipped (re-upload the material)"
        );
    }
}
