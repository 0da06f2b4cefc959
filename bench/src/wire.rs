//! The two wire dialects the generator speaks, sans-IO: frames out, borrowed events in.
//!
//! * **y-websocket** (`y-protocols`): every WebSocket message holds one or more y-sync
//!   messages (`varuint type` then its body). Lectern may pack several into one message.
//! * **Hocuspocus** (v4): every WebSocket message holds one message prefixed with the
//!   document name (`varString`); the client must send an `Auth` message (type 2, subtype 0
//!   "token", `varString` token) for a document before the server accepts anything else for
//!   it, and the server answers a client's step 1 with step 2 and then its own step 1 tagged
//!   `SyncReply` (type 4).
//!
//! Outgoing frames are built with the `yrs::sync` encoders; incoming frames are walked with
//! the `yrs` lib0 reader without copying payloads, so the hot receive path only borrows.

use yrs::StateVector;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::protocol::{
    MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_STEP_2,
    MSG_SYNC_UPDATE,
};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};

/// Hocuspocus message types that differ from or extend y-protocols
/// (`packages/server/src/types.ts`).
mod hocuspocus {
    /// A sync message that does not ask the receiver for another step 1.
    pub const SYNC_REPLY: u64 = 4;
    /// The server's acknowledgement that it stored an update.
    pub const SYNC_STATUS: u64 = 8;
    /// `Auth` subtypes (`packages/common/src/auth.ts`).
    pub const AUTH_TOKEN: u64 = 0;
    pub const AUTH_PERMISSION_DENIED: u64 = 1;
    pub const AUTH_AUTHENTICATED: u64 = 2;
}

/// Which server dialect to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Standard y-websocket: one document per socket, named by the URL path.
    #[value(name = "y-websocket")]
    YWebsocket,
    /// @hocuspocus/server v4: document name in every frame, `Auth` first.
    Hocuspocus,
}

/// One message the server sent, borrowing from the received frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The server's sync step 1 (its state vector); a client answers with step 2.
    SyncStep1(&'a [u8]),
    /// Sync step 2: the update the client lacked.
    SyncStep2(&'a [u8]),
    /// A document update relayed from another client (or echoed).
    Update(&'a [u8]),
    /// Awareness, query-awareness, sync status and other messages the bench ignores.
    Ignored,
    /// Hocuspocus accepted the token for this document.
    Authenticated,
    /// The server refused access, with its reason.
    PermissionDenied(&'a str),
}

/// A frame that is not in the expected dialect.
#[derive(Debug)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

impl From<yrs::encoding::read::Error> for WireError {
    fn from(e: yrs::encoding::read::Error) -> Self {
        WireError(format!("malformed frame: {e}"))
    }
}

/// Frame builder and parser for one document in one dialect.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The dialect.
    protocol: Protocol,
    /// The document name (URL path segment or Hocuspocus frame prefix).
    doc: String,
}

impl Wire {
    pub fn new(protocol: Protocol, doc: impl Into<String>) -> Self {
        Wire {
            protocol,
            doc: doc.into(),
        }
    }

    /// The URL path to request: y-websocket names the document in the path; Hocuspocus
    /// names it inside every frame, so the base path is used as is.
    pub fn path(&self, base_path: &str) -> String {
        match self.protocol {
            Protocol::YWebsocket => format!("{}/{}", base_path.trim_end_matches('/'), self.doc),
            Protocol::Hocuspocus if base_path.is_empty() => "/".to_owned(),
            Protocol::Hocuspocus => base_path.to_owned(),
        }
    }

    /// The frames a client sends as soon as the socket is open: (Hocuspocus: `Auth`, then)
    /// sync step 1 with the client's state vector.
    pub fn open(&self, token: &str, sv: &StateVector) -> Vec<Vec<u8>> {
        let mut frames = Vec::with_capacity(2);
        if self.protocol == Protocol::Hocuspocus {
            let mut enc = EncoderV1::new();
            enc.write_string(&self.doc);
            enc.write_var(MSG_AUTH);
            enc.write_var(hocuspocus::AUTH_TOKEN);
            enc.write_string(token);
            frames.push(enc.to_vec());
        }
        frames.push(self.frame(&Message::Sync(SyncMessage::SyncStep1(sv.clone()))));
        frames
    }

    /// Sync step 2 carrying `update` (the answer to the server's step 1).
    pub fn sync_step2(&self, update: Vec<u8>) -> Vec<u8> {
        self.frame(&Message::Sync(SyncMessage::SyncStep2(update)))
    }

    /// A document update.
    pub fn update(&self, update: Vec<u8>) -> Vec<u8> {
        self.frame(&Message::Sync(SyncMessage::Update(update)))
    }

    fn frame(&self, msg: &Message) -> Vec<u8> {
        let mut enc = EncoderV1::new();
        if self.protocol == Protocol::Hocuspocus {
            enc.write_string(&self.doc);
        }
        msg.encode(&mut enc);
        enc.to_vec()
    }

    /// Walks every message in `frame`, calling `on` for each. Messages of a type the bench
    /// does not know end the walk (their length is unknown), which is harmless: the bench
    /// only needs sync messages, and servers put those first.
    pub fn parse<'a>(
        &self,
        frame: &'a [u8],
        mut on: impl FnMut(Incoming<'a>),
    ) -> Result<(), WireError> {
        let mut cur = Cursor::new(frame);
        while cur.next < frame.len() {
            if self.protocol == Protocol::Hocuspocus {
                // The document name; one socket carries one document here, so it is skipped.
                read_slice(&mut cur)?;
            }
            let tag: u64 = cur.read_var()?;
            let known = match (self.protocol, tag) {
                (_, t) if t == u64::from(MSG_SYNC) => {
                    on(read_sync(&mut cur)?);
                    true
                }
                (Protocol::Hocuspocus, hocuspocus::SYNC_REPLY) => {
                    on(read_sync(&mut cur)?);
                    true
                }
                (_, t) if t == u64::from(MSG_AWARENESS) => {
                    read_slice(&mut cur)?;
                    on(Incoming::Ignored);
                    true
                }
                (_, t) if t == u64::from(MSG_QUERY_AWARENESS) => {
                    on(Incoming::Ignored);
                    true
                }
                (Protocol::Hocuspocus, t) if t == u64::from(MSG_AUTH) => {
                    let sub: u64 = cur.read_var()?;
                    match sub {
                        hocuspocus::AUTH_AUTHENTICATED => {
                            read_str(&mut cur)?; // scope: "read-write" or "readonly"
                            on(Incoming::Authenticated);
                        }
                        hocuspocus::AUTH_PERMISSION_DENIED => {
                            on(Incoming::PermissionDenied(read_str(&mut cur)?));
                        }
                        _ => on(Incoming::Ignored),
                    }
                    true
                }
                (Protocol::YWebsocket, t) if t == u64::from(MSG_AUTH) => {
                    // y-protocols auth: 0 = permission denied + reason, otherwise granted.
                    let sub: u64 = cur.read_var()?;
                    if sub == 0 {
                        on(Incoming::PermissionDenied(read_str(&mut cur)?));
                    } else {
                        on(Incoming::Ignored);
                    }
                    true
                }
                (Protocol::Hocuspocus, hocuspocus::SYNC_STATUS) => {
                    let _saved: u64 = cur.read_var()?;
                    on(Incoming::Ignored);
                    true
                }
                _ => false,
            };
            if !known {
                on(Incoming::Ignored);
                break;
            }
        }
        Ok(())
    }
}

fn read_sync<'a>(cur: &mut Cursor<'a>) -> Result<Incoming<'a>, WireError> {
    let sub: u64 = cur.read_var()?;
    let body = read_slice(cur)?;
    match sub {
        s if s == u64::from(MSG_SYNC_STEP_1) => Ok(Incoming::SyncStep1(body)),
        s if s == u64::from(MSG_SYNC_STEP_2) => Ok(Incoming::SyncStep2(body)),
        s if s == u64::from(MSG_SYNC_UPDATE) => Ok(Incoming::Update(body)),
        other => Err(WireError(format!("unknown sync message type {other}"))),
    }
}

/// `read_string` with the lifetime of the frame.
fn read_str<'a>(cur: &mut Cursor<'a>) -> Result<&'a str, WireError> {
    std::str::from_utf8(read_slice(cur)?).map_err(|_| WireError("invalid UTF-8".to_owned()))
}

/// `read_buf` with the lifetime of the frame rather than of the cursor borrow.
fn read_slice<'a>(cur: &mut Cursor<'a>) -> Result<&'a [u8], WireError> {
    let len: u32 = cur.read_var()?;
    let start = cur.next;
    let end = start
        .checked_add(len as usize)
        .filter(|&end| end <= cur.buf.len())
        .ok_or_else(|| WireError("frame cut short".to_owned()))?;
    cur.next = end;
    Ok(&cur.buf[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(wire: &Wire, frame: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        wire.parse(frame, |m| out.push(format!("{m:?}")))
            .expect("parse");
        out
    }

    #[test]
    fn y_websocket_packed_messages_are_all_seen() {
        let w = Wire::new(Protocol::YWebsocket, "d");
        let mut frame = w.update(vec![1, 2, 3]);
        frame.extend(w.sync_step2(vec![9]));
        assert_eq!(collect(&w, &frame), ["Update([1, 2, 3])", "SyncStep2([9])"]);
    }

    #[test]
    fn hocuspocus_frames_carry_the_document_name() {
        let w = Wire::new(Protocol::Hocuspocus, "room-1");
        let open = w.open("tok", &StateVector::default());
        assert_eq!(open.len(), 2);
        // varString "room-1", Auth (2), Token (0), varString "tok"
        assert_eq!(&open[0][..7], b"\x06room-1");
        assert_eq!(&open[0][7..], b"\x02\x00\x03tok");
        // SyncReply from the server carries its step 1.
        let mut reply = b"\x06room-1\x04\x00".to_vec();
        reply.extend([1, 0]);
        assert_eq!(collect(&w, &reply), ["SyncStep1([0])"]);
        let auth_ok = b"\x06room-1\x02\x02\x0aread-write";
        assert_eq!(collect(&w, auth_ok), ["Authenticated"]);
        assert_eq!(w.path(""), "/");
        assert_eq!(
            Wire::new(Protocol::YWebsocket, "a/b").path("/ws/"),
            "/ws/a/b"
        );
    }

    #[test]
    fn truncated_frames_are_errors() {
        let w = Wire::new(Protocol::YWebsocket, "d");
        let frame = w.update(vec![1, 2, 3]);
        assert!(w.parse(&frame[..frame.len() - 1], |_| {}).is_err());
    }
}
