//! A frame on the multiplexed socket (`/ws`): a document name (a lib0 string) then either
//! the "leave" marker or an ordinary y-sync frame. The server's `handle_multiplexed_frame`
//! is private to the server crate; this target runs the same parse with the same
//! primitives (yrs' cursor, `DocId::new`, `decode_frame`), before any access decision,
//! as the server does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yrs::encoding::read::{Cursor, Read};

/// The message kind the server reads as "leave this document" (`MSG_LEAVE_DOC` in ws.rs).
const MSG_LEAVE_DOC: u8 = 100;

fuzz_target!(|frame: &[u8]| {
    let mut cursor = Cursor::new(frame);
    let Ok(name) = cursor.read_string() else {
        return;
    };
    let Ok(_doc) = lectern_collab::DocId::new(name) else {
        return;
    };
    let body = &frame[cursor.next..];
    if body.first() == Some(&MSG_LEAVE_DOC) {
        return;
    }
    let _ = lectern_collab::protocol::decode_frame(body);
});
