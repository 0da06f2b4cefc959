//! Going back to a stored version without rewriting history.
//!
//! A version is a document's whole state at some moment. Restoring it must not replace the
//! live document (connected clients would diverge from it); it is a *new* update that
//! undoes everything done since the version, which every client applies like any edit, and
//! which can itself be undone by restoring the version taken just before it.
//!
//! How: a scratch document holds the version, receives everything the live document has
//! that the version lacks (as one tracked transaction), and an undo manager undoes that
//! transaction. What the undo wrote is the restoring update. Yjs applications revert to a
//! snapshot the same way; it works for every type (text with formatting, maps, arrays,
//! nested types) because undo knows each of them.

use yrs::undo::Options as UndoOptions;
use yrs::updates::decoder::Decode;
use yrs::{Doc, Options, Origin, ReadTxn, Transact, UndoManager, Update};

use crate::limits::{self, LimitError, UpdateLimits};

/// Why a version could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The version or the live state failed the update limits (a corrupt row).
    #[error("stored state is unreadable")]
    Unreadable(#[from] LimitError),
    /// The version or the live state does not decode.
    #[error("stored state does not decode")]
    Undecodable(#[from] yrs::encoding::read::Error),
    /// The version or the live state does not apply.
    #[error("stored state does not apply")]
    Inapplicable(#[from] yrs::error::UpdateError),
}

/// The origin the scratch document's tracked transaction carries.
const SINCE_VERSION: &str = "lectern-since-version";

/// The update that brings a document whose state is `live` back to `version` (both whole
/// encoded v1 states, `version` taken earlier from the same document). `None` when they
/// already read the same. Both are checked against `limits` before yrs decodes them.
pub fn restoring_update(
    live: &[u8],
    version: &[u8],
    limits: &UpdateLimits,
) -> Result<Option<Vec<u8>>, RestoreError> {
    limits::check_update_v1(live, limits)?;
    limits::check_update_v1(version, limits)?;
    let live_doc = Doc::new();
    apply(&live_doc, live, None)?;
    let live_state = live_doc.transact().state_vector();

    // Undo needs the deleted content: keep it.
    let scratch = Doc::with_options(Options {
        skip_gc: true,
        ..Options::default()
    });
    apply(&scratch, version, None)?;
    let version_state = scratch.transact().state_vector();
    let since = live_doc
        .transact()
        .encode_state_as_update_v1(&version_state);

    let origin = Origin::from(SINCE_VERSION);
    let mut undo = UndoManager::with_options(UndoOptions {
        // One transaction is tracked; never merge it with anything else.
        capture_timeout_millis: 0,
        tracked_origins: [origin.clone()].into_iter().collect(),
        ..UndoOptions::default()
    });
    // Every root either document has is in scope, including roots made after the version.
    let names: Vec<String> = {
        let live_txn = live_doc.transact();
        let scratch_txn = scratch.transact();
        let mut names: Vec<String> = live_txn
            .root_refs()
            .chain(scratch_txn.root_refs())
            .map(|(name, _)| name.to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    for name in names {
        // The root's type does not matter to undo, which works on items; a map handle is
        // enough to name the branch.
        let root = scratch.get_or_insert_map(name);
        undo.expand_scope(&scratch, &root);
    }
    apply(&scratch, &since, Some(origin))?;
    while undo.can_undo() {
        if !undo.undo_blocking() {
            break;
        }
    }
    let restoring = scratch.transact().encode_state_as_update_v1(&live_state);
    let changes = {
        let update = Update::decode_v1(&restoring)?;
        !update.state_vector().is_empty() || !update.delete_set().is_empty()
    };
    Ok(changes.then_some(restoring))
}

fn apply(doc: &Doc, bytes: &[u8], origin: Option<Origin>) -> Result<(), RestoreError> {
    let update = Update::decode_v1(bytes)?;
    let mut txn = match origin {
        Some(origin) => doc.transact_mut_with(origin),
        None => doc.transact_mut(),
    };
    Ok(txn.apply_update(update)?)
}

#[cfg(test)]
mod tests {
    use yrs::types::ToJson;
    use yrs::{Array, GetString, Map, MapPrelim, StateVector, Text, TextPrelim, WriteTxn};

    use super::*;

    fn state(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// A live document (gc on, as rooms keep them) edited by two clients.
    fn live() -> Doc {
        Doc::with_client_id(1)
    }

    fn restore(live: &Doc, version: &[u8]) -> bool {
        let update =
            restoring_update(&state(live), version, &UpdateLimits::default()).expect("restores");
        match update {
            Some(update) => {
                live.transact_mut()
                    .apply_update(Update::decode_v1(&update).expect("decodes"))
                    .expect("test value");
                true
            }
            None => false,
        }
    }

    fn text(doc: &Doc, name: &str) -> String {
        doc.get_or_insert_text(name).get_string(&doc.transact())
    }

    #[test]
    fn text_comes_back_as_it_was_after_inserts_and_deletes() {
        let doc = live();
        let content = doc.get_or_insert_text("content");
        content.insert(&mut doc.transact_mut(), 0, "Cells have a nucleus.");
        let version = state(&doc);
        content.remove_range(&mut doc.transact_mut(), 0, 6);
        content.insert(&mut doc.transact_mut(), 0, "VANDALISED ");
        content.push(&mut doc.transact_mut(), " more junk");
        assert_ne!(text(&doc, "content"), "Cells have a nucleus.");
        assert!(restore(&doc, &version));
        assert_eq!(text(&doc, "content"), "Cells have a nucleus.");
    }

    #[test]
    fn a_client_that_edited_concurrently_converges_on_the_restored_state() {
        let doc = live();
        let content = doc.get_or_insert_text("content");
        content.insert(&mut doc.transact_mut(), 0, "one two three");
        let version = state(&doc);
        content.remove_range(&mut doc.transact_mut(), 4, 4);
        // A connected client has everything so far.
        let client = Doc::with_client_id(2);
        client
            .transact_mut()
            .apply_update(Update::decode_v1(&state(&doc)).expect("decodes"))
            .expect("test value");
        let before = doc.transact().state_vector();
        assert!(restore(&doc, &version));
        let restoring = doc
            .transact()
            .encode_state_as_update_v1(&client.transact().state_vector());
        client
            .transact_mut()
            .apply_update(Update::decode_v1(&restoring).expect("decodes"))
            .expect("test value");
        assert_eq!(text(&client, "content"), "one two three");
        assert_ne!(
            before,
            doc.transact().state_vector(),
            "the restore is a new update"
        );
    }

    #[test]
    fn maps_arrays_and_nested_types_come_back_and_new_roots_are_emptied() {
        let doc = live();
        let messages = doc.get_or_insert_array("messages");
        {
            let mut txn = doc.transact_mut();
            let message = messages.push_back(
                &mut txn,
                MapPrelim::from([("role".to_owned(), yrs::In::from("user"))]),
            );
            message.insert(&mut txn, "text", TextPrelim::new("What is ATP?"));
        }
        let version = state(&doc);
        {
            let mut txn = doc.transact_mut();
            messages.remove(&mut txn, 0);
            messages.push_back(&mut txn, "spam");
            let other = txn.get_or_insert_map("made_later");
            other.insert(&mut txn, "k", "v");
        }
        assert!(restore(&doc, &version));
        let txn = doc.transact();
        let json = messages.to_json(&txn);
        assert_eq!(
            serde_json::to_value(json).expect("test value"),
            serde_json::json!([{ "role": "user", "text": "What is ATP?" }])
        );
        let later = txn.get_map("made_later").expect("the root stays");
        assert_eq!(later.len(&txn), 0);
    }

    #[test]
    fn restoring_the_same_state_changes_nothing_and_a_restore_can_be_undone() {
        let doc = live();
        let content = doc.get_or_insert_text("content");
        content.insert(&mut doc.transact_mut(), 0, "first");
        let first = state(&doc);
        assert!(!restore(&doc, &first));
        content.push(&mut doc.transact_mut(), " second");
        let second = state(&doc);
        assert!(restore(&doc, &first));
        assert_eq!(text(&doc, "content"), "first");
        assert!(restore(&doc, &second));
        assert_eq!(text(&doc, "content"), "first second");
    }
}
