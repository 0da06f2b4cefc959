//! An awareness (presence) payload from a client, as the frame reader and a room take it:
//! checked (`check_awareness_v1`), decoded, applied to the room's awareness, each state's
//! JSON read back, and the merged state encoded for the next joiner.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yrs::Doc;
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;

fuzz_target!(|payload: &[u8]| {
    if lectern_collab::limits::check_awareness_v1(payload).is_err() {
        return;
    }
    let Ok(update) = AwarenessUpdate::decode_v1(payload) else {
        return;
    };
    let clients: Vec<yrs::ClientID> = update.clients.keys().copied().collect();
    let mut awareness = Awareness::new(Doc::new());
    if awareness.apply_update(update).is_err() {
        return;
    }
    for client in clients {
        let _ = awareness.state::<yrs::Any>(client);
    }
    if let Ok(merged) = awareness.update() {
        let frame = lectern_collab::protocol::encode_awareness(&merged);
        let _ = lectern_collab::protocol::decode_frame(&frame);
    }
});
