//! Client ids the server writes under in a document, which clients may not use.
//!
//! A server-side peer (an AI job) edits a document under a client id of its own, and other
//! clients tell its edits apart by that id (Yjs items are identified by client id and
//! clock). While it writes, a client could send structs under the same id and take the
//! peer's next clocks: its text would then pass for the peer's, and the peer's own later
//! writes would be skipped as already known. So while an id is reserved, the room refuses
//! any client update carrying structs of it ([`crate::CloseReason::ReservedClientId`]).
//!
//! Reservations live in the registry, not in a room, so they survive a room being unloaded
//! and reloaded while the peer still writes. They are per node: a client on another node
//! of a scaled-out deployment is checked by that node only if the peer reserved there too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use yrs::{ClientID, Update};

use crate::DocId;

/// The reserved client ids of every document on this node. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReservedClients {
    // A std mutex: map operations only, never held across an await. Counts, so two
    // reservations of one id (never made by this server, but cheap to allow) both hold.
    by_doc: Arc<Mutex<HashMap<DocId, HashMap<u64, usize>>>>,
}

impl ReservedClients {
    /// Reserves `client` in `doc` until the returned guard is dropped.
    pub(crate) fn reserve(&self, doc: &DocId, client: u64) -> ClientReservation {
        *self
            .lock()
            .entry(doc.clone())
            .or_default()
            .entry(client)
            .or_default() += 1;
        ClientReservation {
            reserved: self.clone(),
            doc: doc.clone(),
            client,
        }
    }

    /// Whether `update` carries structs of a client id reserved in `doc`.
    pub(crate) fn is_forged(&self, doc: &DocId, update: &Update) -> bool {
        let by_doc = self.lock();
        let Some(reserved) = by_doc.get(doc) else {
            return false; // the common case: nothing reserved, nothing to compute
        };
        // Every client with a struct in the update, whatever clock it starts at (the upper
        // `state_vector` leaves out clients whose structs do not start at clock 0).
        let clients = update.state_vector_lower();
        reserved
            .keys()
            .any(|client| clients.contains_client(&ClientID::new(*client)))
    }

    fn release(&self, doc: &DocId, client: u64) {
        let mut by_doc = self.lock();
        let Some(reserved) = by_doc.get_mut(doc) else {
            return;
        };
        if let Some(count) = reserved.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                reserved.remove(&client);
            }
        }
        if reserved.is_empty() {
            by_doc.remove(doc);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DocId, HashMap<u64, usize>>> {
        self.by_doc.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client id reserved in a document (see [`crate::Rooms::reserve_client`]); released
/// when dropped.
#[derive(Debug)]
pub struct ClientReservation {
    /// The registry it is held in.
    reserved: ReservedClients,
    /// The document.
    doc: DocId,
    /// The reserved client id.
    client: u64,
}

impl Drop for ClientReservation {
    fn drop(&mut self) {
        self.reserved.release(&self.doc, self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, Text, Transact};

    fn update_by(client: u64) -> Update {
        let doc = Doc::with_client_id(client);
        let text = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "x");
        Update::decode_v1(&txn.encode_update_v1()).expect("decodes")
    }

    /// An update by `client` that starts after its first clock, as a forger continuing a
    /// peer's clocks would send.
    fn continuation_by(client: u64) -> Update {
        let doc = Doc::with_client_id(client);
        let text = doc.get_or_insert_text("t");
        text.insert(&mut doc.transact_mut(), 0, "peer");
        let mut txn = doc.transact_mut();
        let before = yrs::ReadTxn::state_vector(&txn);
        text.insert(&mut txn, 4, "forged");
        Update::decode_v1(&yrs::ReadTxn::encode_diff_v1(&txn, &before)).expect("decodes")
    }

    #[test]
    fn an_update_continuing_a_reserved_ids_clocks_is_forged() {
        let reserved = ReservedClients::default();
        let doc = DocId::new("d").expect("doc id");
        let _held = reserved.reserve(&doc, 9);
        assert!(reserved.is_forged(&doc, &continuation_by(9)));
        assert!(!reserved.is_forged(&doc, &continuation_by(10)));
    }

    #[test]
    fn only_updates_with_a_reserved_id_in_that_document_are_forged_until_released() {
        let reserved = ReservedClients::default();
        let doc = DocId::new("d").expect("doc id");
        let other = DocId::new("e").expect("doc id");
        assert!(!reserved.is_forged(&doc, &update_by(7)));
        let first = reserved.reserve(&doc, 7);
        let second = reserved.reserve(&doc, 7);
        assert!(reserved.is_forged(&doc, &update_by(7)));
        assert!(!reserved.is_forged(&doc, &update_by(8)));
        assert!(!reserved.is_forged(&other, &update_by(7)));
        drop(first);
        assert!(reserved.is_forged(&doc, &update_by(7)), "still held once");
        drop(second);
        assert!(!reserved.is_forged(&doc, &update_by(7)));
        assert!(reserved.lock().is_empty(), "nothing left behind");
    }
}
