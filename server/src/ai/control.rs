//! The WebSocket's AI control message: AI requests on the same socket as the document.
//!
//! Sans-IO: bytes in, typed request out; typed reply in, bytes out. The framing is a
//! y-sync-style message whose first varUint is a type number y-protocols does not use (it
//! uses 0–3), so stock y-websocket clients never send one and never receive one (replies
//! go only to the socket that asked):
//!
//! ```text
//! request = varUint(102) · varString(JSON)   client → server
//! reply   = varUint(103) · varString(JSON)   server → client, only to the asking socket
//! ```
//!
//! The request JSON is `{"request_id"?, "action": "start", "session_id", ...AiJobRequest}`
//! or `{"request_id"?, "action": "status" | "cancel", "job_id"}`; the reply is
//! `{"request_id", "ok": true, "job": AiJobResponse}` or
//! `{"request_id", "ok": false, "error": {"code", "message"}}` with the REST error codes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

use crate::api::dto::{AiJobRequest, AiJobResponse};
use crate::api::error::{ApiError, ErrorCode};

/// Message type of an AI request (client → server).
pub const MSG_AI_REQUEST: u8 = 102;
/// Message type of an AI reply (server → client).
pub const MSG_AI_REPLY: u8 = 103;

/// An AI request read from a socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ControlAction {
    /// Start a job (the body of `POST /sessions/{id}/ai/jobs`, plus the session).
    Start {
        /// The live session.
        session_id: String,
        /// The job.
        #[serde(flatten)]
        job: AiJobRequest,
    },
    /// A job's status.
    Status {
        /// The job.
        job_id: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job.
        job_id: String,
    },
}

/// A request with the client's correlation id.
#[derive(Debug)]
pub struct ControlRequest {
    /// Echoed in the reply (any JSON value; `null` when absent).
    pub request_id: Value,
    /// What to do; `Err` carries why the JSON was not a valid request.
    pub action: Result<ControlAction, String>,
}

/// Why bytes were not an AI request at all (the socket treats this as a protocol error).
#[derive(Debug, thiserror::Error)]
#[error("malformed AI control message")]
pub struct MalformedControl;

/// Whether a y-sync-level message (after any envelope) is an AI request.
pub fn is_request(message: &[u8]) -> bool {
    message.first() == Some(&MSG_AI_REQUEST)
}

/// Decodes an AI request message (`varUint(102) · varString(JSON)`). Framing errors are
/// [`MalformedControl`]; JSON that is not a valid request still yields a request whose
/// `action` is the error, so the client gets an answer it can match.
pub fn decode_request(message: &[u8]) -> Result<ControlRequest, MalformedControl> {
    let mut cursor = Cursor::new(message);
    let kind: u8 = cursor.read_var().map_err(|_| MalformedControl)?;
    if kind != MSG_AI_REQUEST {
        return Err(MalformedControl);
    }
    let json = cursor
        .read_string()
        .map_err(|_| MalformedControl)?
        .to_owned();
    if cursor.next != message.len() {
        return Err(MalformedControl);
    }
    let value: Value = serde_json::from_str(&json).map_err(|_| MalformedControl)?;
    let request_id = value.get("request_id").cloned().unwrap_or(Value::Null);
    let mut body = value;
    if let Value::Object(fields) = &mut body {
        fields.remove("request_id");
    }
    let action = serde_json::from_value(body).map_err(|error| error.to_string());
    Ok(ControlRequest { request_id, action })
}

/// A reply's JSON.
#[derive(Debug, Serialize)]
struct Reply<'a> {
    request_id: &'a Value,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a AiJobResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ReplyError<'a>>,
}

#[derive(Debug, Serialize)]
struct ReplyError<'a> {
    code: ErrorCode,
    message: &'a str,
}

/// Encodes a successful reply.
pub fn encode_job(request_id: &Value, job: &AiJobResponse) -> Vec<u8> {
    encode(&Reply {
        request_id,
        ok: true,
        job: Some(job),
        error: None,
    })
}

/// Encodes a failed reply with the REST error `code`.
pub fn encode_error(request_id: &Value, code: ErrorCode, message: &str) -> Vec<u8> {
    encode(&Reply {
        request_id,
        ok: false,
        job: None,
        error: Some(ReplyError { code, message }),
    })
}

fn encode(reply: &Reply<'_>) -> Vec<u8> {
    // Serialising these plain structs cannot fail; an empty object keeps the frame valid.
    let json = serde_json::to_string(reply).unwrap_or_else(|_| "{}".to_owned());
    let mut buffer = Vec::with_capacity(json.len() + 8);
    buffer.write_var(MSG_AI_REPLY);
    buffer.write_string(&json);
    buffer
}

/// Carries out `request` for `requester` (`None`: not a signed-in local account) and
/// encodes the reply. `rate_limited` is the REST rate limit's verdict for this user: the
/// socket path obeys the same per-user limit as the API.
pub async fn answer(
    ai: &super::AiService,
    requester: Option<super::Requester>,
    rate_limited: Option<std::time::Duration>,
    request: ControlRequest,
) -> Vec<u8> {
    let id = &request.request_id;
    let result = match (requester, rate_limited, request.action) {
        (_, _, Err(reason)) => Err(ApiError::InvalidRequest(reason)),
        (None, _, Ok(_)) => Err(ApiError::Forbidden),
        (Some(_), Some(retry_after), Ok(_)) => Err(ApiError::RateLimited { retry_after }),
        (Some(requester), None, Ok(action)) => match action {
            ControlAction::Start { session_id, job } => ai
                .start(&requester, &session_id, job)
                .await
                .map_err(ApiError::from),
            ControlAction::Status { job_id } => {
                ai.get(&requester, &job_id).await.map_err(ApiError::from)
            }
            ControlAction::Cancel { job_id } => {
                ai.cancel(&requester, &job_id).await.map_err(ApiError::from)
            }
        },
    };
    match result {
        Ok(job) => encode_job(id, &job),
        Err(error) => {
            let (_, code) = error.parts();
            if let ApiError::Internal(source) = &error {
                tracing::error!(
                    error = &**source as &dyn std::error::Error,
                    "AI request failed"
                );
            }
            encode_error(id, code, &error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Vec<u8> {
        let mut buffer = Vec::new();
        buffer.write_var(MSG_AI_REQUEST);
        buffer.write_string(json);
        buffer
    }

    #[test]
    fn requests_decode_with_their_correlation_id() {
        let decoded = decode_request(&request(
            r#"{"request_id": 7, "action": "start", "session_id": "s", "kind": "chat", "prompt": "why?"}"#,
        ))
        .expect("framing");
        assert_eq!(decoded.request_id, Value::from(7));
        match decoded.action {
            Ok(ControlAction::Start { session_id, job }) => {
                assert_eq!(session_id, "s");
                assert_eq!(job.prompt.as_deref(), Some("why?"));
            }
            other => panic!("{other:?}"),
        }
        let cancel =
            decode_request(&request(r#"{"action": "cancel", "job_id": "j"}"#)).expect("framing");
        assert!(matches!(cancel.action, Ok(ControlAction::Cancel { .. })));
    }

    #[test]
    fn bad_json_gets_an_answer_and_bad_framing_does_not() {
        let decoded =
            decode_request(&request(r#"{"request_id": "x", "action": "fly"}"#)).expect("framing");
        assert_eq!(decoded.request_id, Value::from("x"));
        assert!(decoded.action.is_err());
        assert!(decode_request(&[MSG_AI_REQUEST, 5, b'{']).is_err());
        assert!(decode_request(&[0, 0]).is_err());
    }

    #[test]
    fn replies_are_type_103_and_never_look_like_y_sync() {
        let reply = encode_error(&Value::Null, ErrorCode::Forbidden, "no");
        assert_eq!(reply[0], MSG_AI_REPLY);
        let mut cursor = Cursor::new(&reply[1..]);
        let json: Value =
            serde_json::from_str(cursor.read_string().expect("string")).expect("json");
        assert_eq!(json["ok"], false);
        assert_eq!(json["error"]["code"], "forbidden");
    }
}
