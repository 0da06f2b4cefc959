//! The y-sync wire protocol, sans-IO: bytes in, typed messages out, and back.
//!
//! The encoding itself is `yrs::sync`'s; this module only adds what a server needs on top:
//! strict frame decoding (a truncated or trailing-garbage frame is an error, not "end of
//! input"), bounded counts, and encoders that produce ready-to-send `Bytes` so one encoding
//! can be shared by every receiver.
//!
//! Document updates are *not* decoded here: a frame is read before anyone knows whether its
//! sender may edit the document, and decoding an update is where hostile nesting does its
//! damage. [`ClientMessage::Update`] carries the raw payload; the room decides access first,
//! then checks the bytes against its [`UpdateLimits`](crate::limits::UpdateLimits), then
//! decodes. State vectors and awareness updates have no nesting; their counts are checked
//! against the bytes left before yrs reserves memory for them.

use bytes::Bytes;
use yrs::StateVector;
use yrs::encoding::read::Cursor;
use yrs::encoding::read::Read;
use yrs::encoding::write::Write;
use yrs::sync::protocol::{
    MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_STEP_2, MSG_SYNC_UPDATE,
};
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};

use crate::limits::{self, LimitError};

/// Why a frame from a client was refused. The connection that sent it is closed; the room
/// and everyone else carry on.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is not a sequence of complete y-sync messages.
    #[error("malformed y-sync frame: {0}")]
    Malformed(#[from] yrs::encoding::read::Error),
    /// The frame carried no message at all.
    #[error("empty frame")]
    Empty,
    /// A message kind this server does not accept from clients (for example `Auth`).
    #[error("unsupported y-sync message kind {0}")]
    Unsupported(u8),
    /// A state vector or awareness update whose counts exceed its bytes.
    #[error("refused y-sync payload: {0}")]
    Refused(#[from] LimitError),
}

/// A validated message from a client, ready for a room.
#[derive(Debug)]
pub enum ClientMessage {
    /// Sync step 1: the client's state vector; the room answers with what the client lacks.
    SyncStep1(StateVector),
    /// Sync step 2 or a plain update: document changes, still encoded. The room checks the
    /// sender's access, then the update's limits, and only then decodes it.
    Update(Bytes),
    /// An awareness update (presence, cursors). Kept encoded: the room re-broadcasts it as is.
    Awareness(AwarenessUpdate),
    /// The client asks for every peer's awareness state.
    AwarenessQuery,
}

/// Decodes one WebSocket binary frame into the messages it carries.
///
/// Stock y-websocket clients send one message per frame, but the protocol allows several
/// back to back, so all are read. Unlike `yrs::sync::MessageReader`, a message cut short is
/// an error here rather than a silent end of input. The envelope (tags and length prefixes)
/// is read with yrs' own primitives. Update payloads are copied out of `frame`; see
/// [`decode_shared_frame`] to share them instead.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<ClientMessage>, ProtocolError> {
    decode_shared_frame(&Bytes::copy_from_slice(frame))
}

/// Like [`decode_frame`], with update payloads sliced from `frame` without copying.
pub fn decode_shared_frame(frame: &Bytes) -> Result<Vec<ClientMessage>, ProtocolError> {
    let mut cursor = Cursor::new(frame);
    let mut messages = Vec::with_capacity(1);
    while cursor.has_content() {
        messages.push(decode_message(frame, &mut cursor)?);
    }
    if messages.is_empty() {
        return Err(ProtocolError::Empty);
    }
    Ok(messages)
}

fn decode_message(frame: &Bytes, cursor: &mut Cursor<'_>) -> Result<ClientMessage, ProtocolError> {
    let tag: u8 = cursor.read_var()?;
    match tag {
        MSG_SYNC => {
            let sync_tag: u8 = cursor.read_var()?;
            let payload = cursor.read_buf()?;
            match sync_tag {
                MSG_SYNC_STEP_1 => {
                    limits::check_state_vector_v1(payload)?;
                    Ok(ClientMessage::SyncStep1(StateVector::decode_v1(payload)?))
                }
                MSG_SYNC_STEP_2 | MSG_SYNC_UPDATE => {
                    let len = payload.len();
                    let end = cursor.next;
                    Ok(ClientMessage::Update(frame.slice(end - len..end)))
                }
                _ => Err(ProtocolError::Malformed(
                    yrs::encoding::read::Error::UnexpectedValue,
                )),
            }
        }
        MSG_AWARENESS => {
            let payload = cursor.read_buf()?;
            limits::check_awareness_v1(payload)?;
            Ok(ClientMessage::Awareness(AwarenessUpdate::decode_v1(
                payload,
            )?))
        }
        MSG_QUERY_AWARENESS => Ok(ClientMessage::AwarenessQuery),
        other => Err(ProtocolError::Unsupported(other)),
    }
}

/// `Sync step 1` carrying the server's state vector.
pub fn encode_sync_step1(state_vector: &StateVector) -> Bytes {
    encode(&Message::Sync(SyncMessage::SyncStep1(state_vector.clone())))
}

/// `Sync step 2` carrying an encoded update (the part of the document the peer lacks).
pub fn encode_sync_step2(update: &[u8]) -> Bytes {
    encode_sync_payload(MSG_SYNC_STEP_2, update)
}

/// A document update broadcast.
pub fn encode_update(update: &[u8]) -> Bytes {
    encode_sync_payload(MSG_SYNC_UPDATE, update)
}

/// An awareness update broadcast.
pub fn encode_awareness(update: &AwarenessUpdate) -> Bytes {
    let payload = update.encode_v1();
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_AWARENESS);
    encoder.write_buf(&payload);
    Bytes::from(encoder.to_vec())
}

/// A request for every peer's awareness state.
pub fn encode_awareness_query() -> Bytes {
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_QUERY_AWARENESS);
    Bytes::from(encoder.to_vec())
}

// Writes the sync envelope around `payload` without first copying it into a `Vec` owned by a
// `SyncMessage`: updates can be megabytes, and every copy shows up in join-storm memory.
fn encode_sync_payload(tag: u8, payload: &[u8]) -> Bytes {
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_SYNC);
    encoder.write_var(tag);
    encoder.write_buf(payload);
    Bytes::from(encoder.to_vec())
}

fn encode(message: &Message) -> Bytes {
    Bytes::from(message.encode_v1())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, ReadTxn, Text, Transact};

    fn update_with_text(text: &str) -> Vec<u8> {
        let doc = Doc::new();
        let body = doc.get_or_insert_text("body");
        let mut txn = doc.transact_mut();
        body.insert(&mut txn, 0, text);
        txn.encode_update_v1()
    }

    #[test]
    fn round_trips_an_update_frame() {
        let update = update_with_text("hello");
        let frame = encode_update(&update);
        let mut messages = decode_frame(&frame).expect("valid frame");
        assert_eq!(messages.len(), 1);
        let Some(ClientMessage::Update(payload)) = messages.pop() else {
            panic!("expected an update");
        };
        let update = yrs::Update::decode_v1(&payload).expect("decodes");
        let doc = Doc::new();
        let body = doc.get_or_insert_text("body");
        doc.transact_mut().apply_update(update).expect("apply");
        assert_eq!(body.get_string(&doc.transact()), "hello");
    }

    #[test]
    fn reads_several_messages_in_one_frame() {
        let mut frame = encode_sync_step1(&Doc::new().transact().state_vector()).to_vec();
        frame.extend_from_slice(&encode_awareness_query());
        let messages = decode_frame(&frame).expect("valid frame");
        assert!(matches!(
            messages.as_slice(),
            [ClientMessage::SyncStep1(_), ClientMessage::AwarenessQuery]
        ));
    }

    #[test]
    fn truncated_frame_is_an_error_not_end_of_input() {
        let frame = encode_update(&update_with_text("hello world"));
        let truncated = &frame[..frame.len() - 3];
        assert!(matches!(
            decode_frame(truncated),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn update_payloads_are_not_decoded_by_the_frame_reader() {
        // Whether the sender may edit is not known yet: the payload travels as bytes.
        let frame = encode_update(&[0xff, 0xff, 0xff, 0x01, 0x02]);
        let messages = decode_frame(&frame).expect("envelope is valid");
        assert!(matches!(
            messages.as_slice(),
            [ClientMessage::Update(payload)] if payload[..] == [0xff, 0xff, 0xff, 0x01, 0x02]
        ));
    }

    #[test]
    fn state_vectors_claiming_more_entries_than_bytes_are_refused() {
        // Sync step 1 whose state vector claims 2^28 entries in two bytes.
        let frame = [
            MSG_SYNC,
            MSG_SYNC_STEP_1,
            6,
            0x80,
            0x80,
            0x80,
            0x80,
            0x01,
            0,
        ];
        assert!(matches!(
            decode_frame(&frame),
            Err(ProtocolError::Refused(LimitError::CountExceedsInput { .. }))
        ));
    }

    #[test]
    fn empty_frame_and_unknown_kinds_are_rejected() {
        assert!(matches!(decode_frame(&[]), Err(ProtocolError::Empty)));
        assert!(matches!(
            decode_frame(&[7, 1, 0]),
            Err(ProtocolError::Unsupported(7))
        ));
    }
}
