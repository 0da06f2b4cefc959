//! A y-sync WebSocket frame from a client, exactly as `/ws/{doc}` hands it to the frame
//! reader, and each update it carries through the check a room runs before decoding it.
//! Anything may come back as an error; nothing may panic, hang or blow the stack.
#![no_main]

use lectern_collab::ClientMessage;
use lectern_collab::limits::{UpdateLimits, check_update_v1};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let Ok(messages) = lectern_collab::protocol::decode_frame(frame) else {
        return;
    };
    for message in messages {
        if let ClientMessage::Update(payload) = message {
            let _ = check_update_v1(&payload, &UpdateLimits::default());
        }
    }
});
