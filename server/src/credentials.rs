//! Who opened a WebSocket, and what that lets them do on each document.
//!
//! A socket presents at most one token, as the `token` query parameter (what a stock
//! `y-websocket` provider sends with `params: { token }`) or as a `bearer.<token>` entry in
//! `Sec-WebSocket-Protocol` (for browsers that keep tokens out of URLs; offer `lectern` too,
//! the subprotocol the server answers with). The token is verified once at upgrade; access
//! is then decided per document and enforced by the room on every message.

use std::sync::Arc;

use axum::http::{HeaderMap, Uri, header};
use lectern_collab::{Access, DocId, Guest};

use crate::AppState;
use crate::auth::{AuthError, Authenticator, DocAccess, DocGrant, Origin, Principal};
use crate::config::AnonymousAccess;

/// The subprotocol the server selects when a client offers it.
pub const SUBPROTOCOL: &str = "lectern";

/// The prefix of a `Sec-WebSocket-Protocol` entry that carries a token.
const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// The user tag of connections without a token (see [`Credentials::user_tag`]).
pub const ANONYMOUS_USER: &str = "anonymous";

/// What a socket authenticated as.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No token: what `--anonymous-access` allows.
    Anonymous,
    /// A signed-in account (ours) or an external identity.
    User(Principal),
    /// A document token minted through the API-key flow: exactly one document.
    Document(DocGrant),
}

impl Credentials {
    /// Verifies the token a request carries, if any. A document token and an access token
    /// have different audiences, so at most one of the two verifications can succeed.
    pub fn from_request(
        authenticator: &Authenticator,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Self, AuthError> {
        let Some(token) = token_from_query(uri).or_else(|| token_from_protocols(headers)) else {
            return Ok(Self::Anonymous);
        };
        Self::from_token(authenticator, &token)
    }

    /// Verifies `token`: a document token or an access token (REST callers send it as
    /// `Authorization: Bearer`).
    pub fn from_token(authenticator: &Authenticator, token: &str) -> Result<Self, AuthError> {
        if let Ok(grant) = authenticator.verify_doc_token(token) {
            return Ok(Self::Document(grant));
        }
        authenticator.verify_access(token).map(Self::User)
    }

    /// When the credentials stop being valid, Unix seconds.
    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Self::Anonymous => None,
            Self::User(principal) => Some(principal.expires_at),
            Self::Document(grant) => Some(grant.expires_at),
        }
    }

    /// The id rooms know this connection's user by. Permission changes re-decide access
    /// for `user:` tags only: anonymous and document-token access never depends on
    /// classroom state.
    pub fn user_tag(&self) -> Arc<str> {
        match self {
            Self::Anonymous => ANONYMOUS_USER.into(),
            Self::User(principal) => user_tag(&principal.subject).into(),
            Self::Document(grant) => format!("doc-token:{}", grant.doc).into(),
        }
    }

    /// What these credentials allow on `doc`; `None` if it may not be opened.
    pub async fn access(&self, state: &AppState, doc: &DocId) -> Option<Access> {
        // A user's inbox opens only for that user's own sign-in (decided in `access`):
        // never through anonymous access, a document token or an external token, whatever
        // they grant elsewhere.
        if crate::notifications::inbox::owner_of(doc.as_str()).is_some()
            && !matches!(self, Self::User(principal) if principal.origin == Origin::Local)
        {
            return None;
        }
        let access = self.granted(state, doc).await?;
        // Whatever a token grants, a session's server-owned document is never writable
        // from a socket (anonymous write access, full document tokens and external tokens'
        // `docs` claims never pass through `access::decide`, which already says so).
        Some(if is_server_owned(doc.as_str()) {
            Access::Read
        } else {
            access
        })
    }

    async fn granted(&self, state: &AppState, doc: &DocId) -> Option<Access> {
        match self {
            Self::Anonymous => match state.config().anonymous_access {
                AnonymousAccess::None => None,
                AnonymousAccess::Read => Some(Access::Read),
                AnonymousAccess::Write => Some(Access::Write),
            },
            Self::Document(grant) => (grant.doc == doc.as_str()).then_some(match grant.access {
                DocAccess::Full => Access::Write,
                DocAccess::Read => Access::Read,
            }),
            Self::User(principal) if principal.origin == Origin::External => principal
                .docs
                .as_ref()
                .is_some_and(|docs| docs.iter().any(|allowed| allowed == doc.as_str()))
                .then_some(Access::Write),
            Self::User(principal) => {
                match crate::access::resolve(state.database(), principal, doc.as_str()).await {
                    Ok(access) => access,
                    Err(error) => {
                        tracing::error!(%doc, error = &error as &dyn std::error::Error, "access lookup failed; refusing");
                        None
                    }
                }
            }
        }
    }

    /// The guest a room admits for these credentials with `access`.
    pub fn guest(&self, access: Access) -> Guest {
        Guest {
            user: self.user_tag(),
            session: self.session().map(Arc::from),
            access,
        }
    }

    /// The login session these credentials belong to, if it can be revoked.
    pub fn session(&self) -> Option<&str> {
        match self {
            Self::User(principal) => principal.session.as_deref(),
            Self::Anonymous | Self::Document(_) => None,
        }
    }
}

/// Whether `doc` names a server-owned document (a session's `session/{id}/lectern`, a
/// user's `user/{id}/inbox`): the whole name space is reserved, registered or not, so no
/// grant can open one for writing.
pub(crate) fn is_server_owned(doc: &str) -> bool {
    crate::notifications::inbox::owner_of(doc).is_some()
        || doc
            .strip_prefix("session/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(session, kind)| {
                !session.is_empty() && kind == lectern_db::sessions::DocKind::Lectern.as_str()
            })
}

/// The room user tag of account `user_id`.
pub fn user_tag(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// The account id behind a room user tag, if it is an account's.
pub fn user_id_of_tag(tag: &str) -> Option<&str> {
    tag.strip_prefix("user:")
}

/// Whether the client offered the `lectern` subprotocol (then the server must select it).
pub fn offers_subprotocol(headers: &HeaderMap) -> bool {
    protocols(headers).any(|protocol| protocol == SUBPROTOCOL)
}

fn token_from_query(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

fn token_from_protocols(headers: &HeaderMap) -> Option<String> {
    protocols(headers)
        .find_map(|protocol| protocol.strip_prefix(BEARER_PROTOCOL_PREFIX))
        .map(str::to_owned)
}

fn protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_session_lectern_name_space_is_server_owned() {
        assert!(is_server_owned("session/abc/lectern"));
        assert!(!is_server_owned("session/abc/notes"));
        assert!(!is_server_owned("session//lectern"));
        assert!(!is_server_owned("session/abc/lectern/more"));
        assert!(!is_server_owned("lectern"));
        assert!(!is_server_owned("classroom/abc/lectern"));
        assert!(is_server_owned("user/abc/inbox"));
        assert!(!is_server_owned("user/abc/notes"));
    }

    #[test]
    fn tokens_come_from_the_query_or_a_bearer_subprotocol() {
        let uri: Uri = "/ws/notes?room=1&token=abc.def.ghi".parse().expect("uri");
        assert_eq!(token_from_query(&uri).as_deref(), Some("abc.def.ghi"));
        let bare: Uri = "/ws/notes?token=".parse().expect("uri");
        assert_eq!(token_from_query(&bare), None);

        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("lectern, bearer.abc.def.ghi"),
        );
        assert_eq!(
            token_from_protocols(&headers).as_deref(),
            Some("abc.def.ghi")
        );
        assert!(offers_subprotocol(&headers));
        assert!(!offers_subprotocol(&HeaderMap::new()));
    }

    #[test]
    fn user_tags_round_trip() {
        assert_eq!(user_id_of_tag(&user_tag("u-1")), Some("u-1"));
        assert_eq!(user_id_of_tag(ANONYMOUS_USER), None);
        assert_eq!(user_id_of_tag("doc-token:notes"), None);
    }
}
