//! A client's document update, taken the way a room takes it: checked against the update
//! limits (`check_update_v1`), and only then decoded, applied to a document, the document
//! encoded as a snapshot (what a room does when it compacts or unloads), that snapshot checked
//! and re-loaded as a room does at load, and everything dropped. Deeply nested values once
//! overflowed the stack at each of those steps, so every one of them is exercised.
#![no_main]

use lectern_collab::limits::{UpdateLimits, check_update_v1};
use libfuzzer_sys::fuzz_target;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

fuzz_target!(|payload: &[u8]| {
    let limits = UpdateLimits::default();
    if check_update_v1(payload, &limits).is_err() {
        return;
    }
    // The check bounds what yrs will read; it does not repeat every semantic check yrs makes
    // (a zero-length block passes it and is then refused by yrs), so decoding may still fail.
    let Ok(update) = Update::decode_v1(payload) else {
        return;
    };
    let doc = Doc::new();
    if doc.transact_mut().apply_update(update).is_err() {
        return;
    }
    // As the room encodes its snapshot: integrated state only, never yrs' pending structs
    // (merging those in can panic on hostile input).
    let snapshot = doc.transact().encode_diff_v1(&StateVector::default());
    drop(doc);
    // A document the room accepted must load again from its own snapshot; otherwise one
    // accepted edit would make the document unloadable for the whole class.
    if let Err(error) = check_update_v1(&snapshot, &limits) {
        panic!("the snapshot of an accepted update is refused at load: {error}");
    }
    let update = Update::decode_v1(&snapshot).expect("a snapshot yrs encoded decodes again");
    let reloaded = Doc::new();
    reloaded
        .transact_mut()
        .apply_update(update)
        .expect("a snapshot applies to an empty document");
});
