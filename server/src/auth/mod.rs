//! Who is calling: token issuing and verification, password hashing, refresh tokens.
//!
//! # Layout
//! - this file: [`Authenticator`], which issues and verifies every JWT the server deals
//!   with, and the [`Principal`] / [`DocGrant`] it yields. The WebSocket code calls
//!   [`Authenticator::verify_access`] and [`Authenticator::verify_doc_token`] on upgrade.
//! - `password.rs`: argon2id hashing on blocking threads, a bounded number at once.
//! - `refresh.rs`: opaque refresh tokens and their stored SHA-256 hashes.
//!
//! # Token kinds
//! - **Access tokens** (HS256, our secret, `aud = lectern-api`): a local account.
//! - **Document tokens** (HS256, our secret, `aud = lectern-doc`): one document, `full` or
//!   `read` access; minted for embedders who hold the server API key.
//! - **External access tokens** (RS256/ES256 public key or HS256 shared secret, configured):
//!   another identity system vouches for `sub` and `role`, optionally limited to `docs`.
//!
//! Every validation pins exactly one algorithm, so `alg: none` and HS/RS confusion (an
//! HS256 token "signed" with our public key) fail before any signature math. Distinct
//! audiences keep a document token from being replayed as an access token and vice versa.

pub mod password;
pub mod refresh;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use lectern_db::accounts::Role;

use crate::Config;

/// The `iss` of every token this server signs.
pub const ISSUER: &str = "lectern";

/// The `aud` of access tokens.
pub const ACCESS_AUDIENCE: &str = "lectern-api";

/// The `aud` of document tokens.
pub const DOC_AUDIENCE: &str = "lectern-doc";

/// Clock skew tolerated on `exp` and `nbf`, in seconds. Small, because access tokens live
/// only minutes.
const LEEWAY_SECS: u64 = 30;

/// The shortest secret accepted for HS256 (its output size: shorter keys weaken it).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a token was rejected. Detailed for logs; the API tells clients only "expired" or
/// "invalid".
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not three base64 parts with a JSON header we understand (includes `alg: none`).
    #[error("token is malformed")]
    Malformed,
    /// The header names an algorithm other than the one pinned for this key.
    #[error("token uses an algorithm that is not accepted")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `aud` is missing or not ours.
    #[error("token audience is wrong")]
    WrongAudience,
    /// `iss` is missing or not the expected one.
    #[error("token issuer is wrong")]
    WrongIssuer,
    /// A required claim is missing or has the wrong type or value.
    #[error("token claims are invalid")]
    InvalidClaims,
    /// Signing a token failed (a bug or a broken key, never the caller's fault).
    #[error("signing a token failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Self::WrongAlgorithm,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::InvalidSubject => Self::InvalidClaims,
            _ => Self::Malformed,
        }
    }
}

/// Why the authenticator could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A configured HS256 secret is too short to be safe.
    #[error("{flag} must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort {
        /// The flag that holds it.
        flag: &'static str,
    },
    /// The external public key file could not be read.
    #[error("reading the external JWT public key {path}")]
    ReadKey {
        /// The configured path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The external public key file is neither an RSA nor a P-256 public key in PEM.
    #[error("{path} is not an RSA or EC P-256 public key in PEM form")]
    BadKey {
        /// The configured path.
        path: PathBuf,
    },
}

/// Where a principal's identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A local account (its id is a `users.id`).
    Local,
    /// An external identity system; the subject is not a local account.
    External,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account id (local) or the external system's subject.
    pub subject: String,
    /// Server-wide role.
    pub role: Role,
    /// Where the identity comes from.
    pub origin: Origin,
    /// For external tokens: the documents the token is limited to, if it says so.
    pub docs: Option<Vec<String>>,
    /// When the token expires, Unix seconds: a socket opened with it closes then (4401).
    pub expires_at: u64,
    /// For our own access tokens: the login session (refresh-token family) it was issued
    /// in. Signing out revokes the session, and sockets opened with its tokens close.
    pub session: Option<String>,
}

/// What a document token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocAccess {
    /// Read and write.
    Full,
    /// Read only: updates are refused, awareness is allowed.
    Read,
}

/// A verified document token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocGrant {
    /// The one document it opens.
    pub doc: String,
    /// What it allows there.
    pub access: DocAccess,
    /// When the token expires, Unix seconds: a socket opened with it closes then (4401).
    pub expires_at: u64,
}

/// A freshly signed token and how long it lives.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Claims of our access tokens.
#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    /// Always [`ISSUER`].
    iss: String,
    /// Always [`ACCESS_AUDIENCE`].
    aud: String,
    /// The `users.id`.
    sub: String,
    /// The account's role when the token was issued.
    role: String,
    /// The login session (refresh-token family id) the token belongs to.
    sid: String,
    /// Issued at, Unix seconds. Not checked by the library; required by this struct.
    iat: u64,
    /// Not before, Unix seconds.
    nbf: u64,
    /// Expiry, Unix seconds.
    exp: u64,
}

/// Claims of our document tokens.
#[derive(Debug, Serialize, Deserialize)]
struct DocClaims {
    /// Always [`ISSUER`].
    iss: String,
    /// Always [`DOC_AUDIENCE`].
    aud: String,
    /// The one document this token opens.
    doc: String,
    /// What it allows there.
    access: DocAccess,
    /// Issued at, Unix seconds.
    iat: u64,
    /// Not before, Unix seconds.
    nbf: u64,
    /// Expiry, Unix seconds.
    exp: u64,
}

/// Claims we read from external access tokens (`aud`, `iss`, `exp`, `nbf` are checked by
/// the validation).
#[derive(Debug, Deserialize)]
struct ExternalClaims {
    /// The external system's user id.
    sub: String,
    /// `faculty`, `student` or `admin`.
    role: String,
    /// Documents the token is limited to, if any.
    #[serde(default)]
    docs: Option<Vec<String>>,
    /// Expiry, Unix seconds (required and checked by the validation).
    exp: u64,
}

/// Only for routing a token to the right key before verifying it.
#[derive(Debug, Deserialize)]
struct UnverifiedIssuer {
    /// Who claims to have issued the token (not yet verified).
    #[serde(default)]
    iss: Option<String>,
}

/// The external identity system's verification key and rules.
struct External {
    /// Its public key or shared secret.
    key: DecodingKey,
    /// Its pinned algorithm, audience and (if configured) issuer.
    validation: Validation,
}

/// Issues and verifies tokens. Built once from [`Config`]; shared by HTTP and WebSocket.
pub struct Authenticator {
    /// Our HS256 secret, for signing.
    encoding: EncodingKey,
    /// The same secret, for verifying.
    decoding: DecodingKey,
    /// Rules for our access tokens.
    access_validation: Validation,
    /// Rules for our document tokens.
    doc_validation: Validation,
    /// Lifetime of access tokens.
    access_ttl: Duration,
    /// Lifetime of document tokens.
    doc_ttl: Duration,
    /// The external identity system, when configured.
    external: Option<External>,
    /// SHA-256 of the API key: comparing fixed-size digests in constant time leaks neither
    /// content nor length.
    api_key_digest: Option<[u8; 32]>,
    /// Hashes and verifies passwords, a bounded number at once.
    passwords: password::Passwords,
}

impl fmt::Debug for Authenticator {
    // Never print keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("access_ttl", &self.access_ttl)
            .field("doc_ttl", &self.doc_ttl)
            .field("external", &self.external.is_some())
            .field("api_key", &self.api_key_digest.is_some())
            .finish_non_exhaustive()
    }
}

/// A validation for one pinned algorithm that requires `exp`, `nbf`, `iss`, `aud`.
fn strict_validation(algorithm: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    validation
}

/// Now, in Unix seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Authenticator {
    /// Builds the authenticator. With no `--jwt-secret`, generates a random one and warns:
    /// tokens then die with the process and are not shared between nodes.
    pub fn from_config(config: &Config) -> Result<Self, AuthSetupError> {
        let secret = match &config.jwt_secret {
            Some(secret) if secret.expose().len() < MIN_SECRET_BYTES => {
                return Err(AuthSetupError::SecretTooShort {
                    flag: "--jwt-secret",
                });
            }
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "no --jwt-secret configured: using a random per-process secret; tokens \
                     will not survive a restart or work on other nodes"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        if config
            .api_key
            .as_ref()
            .is_some_and(|key| key.expose().len() < MIN_SECRET_BYTES)
        {
            // A short key could be guessed through the document-token endpoint.
            return Err(AuthSetupError::SecretTooShort { flag: "--api-key" });
        }
        let external = match (
            &config.external_jwt_public_key_pem,
            &config.external_jwt_secret,
        ) {
            (Some(path), _) => {
                let pem = std::fs::read(path).map_err(|source| AuthSetupError::ReadKey {
                    path: path.clone(),
                    source,
                })?;
                let (key, algorithm) = public_key(&pem)
                    .ok_or_else(|| AuthSetupError::BadKey { path: path.clone() })?;
                Some(External::new(key, algorithm, config))
            }
            (None, Some(secret)) if secret.expose().len() < MIN_SECRET_BYTES => {
                return Err(AuthSetupError::SecretTooShort {
                    flag: "--external-jwt-secret",
                });
            }
            (None, Some(secret)) => Some(External::new(
                DecodingKey::from_secret(secret.expose().as_bytes()),
                Algorithm::HS256,
                config,
            )),
            (None, None) => None,
        };
        Ok(Self {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            access_validation: strict_validation(Algorithm::HS256, ISSUER, ACCESS_AUDIENCE),
            doc_validation: strict_validation(Algorithm::HS256, ISSUER, DOC_AUDIENCE),
            access_ttl: Duration::from_secs(config.access_token_ttl_secs),
            doc_ttl: Duration::from_secs(config.doc_token_ttl_secs),
            external,
            api_key_digest: config
                .api_key
                .as_ref()
                .map(|key| Sha256::digest(key.expose().as_bytes()).into()),
            passwords: passwords_from_config(config),
        })
    }

    /// Signs an access token for local account `user_id`, in login session `session_id`.
    pub fn issue_access(
        &self,
        user_id: &str,
        role: Role,
        session_id: &str,
    ) -> Result<Issued, AuthError> {
        let now = now_secs();
        let expires_in = self.access_ttl.as_secs();
        let claims = AccessClaims {
            iss: ISSUER.into(),
            aud: ACCESS_AUDIENCE.into(),
            sub: user_id.into(),
            role: role.as_str().into(),
            sid: session_id.into(),
            iat: now,
            nbf: now,
            exp: now + expires_in,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Signing)?;
        Ok(Issued { token, expires_in })
    }

    /// Signs a document token for `doc`.
    pub fn issue_doc_token(&self, doc: &str, access: DocAccess) -> Result<Issued, AuthError> {
        let now = now_secs();
        let expires_in = self.doc_ttl.as_secs();
        let claims = DocClaims {
            iss: ISSUER.into(),
            aud: DOC_AUDIENCE.into(),
            doc: doc.into(),
            access,
            iat: now,
            nbf: now,
            exp: now + expires_in,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Signing)?;
        Ok(Issued { token, expires_in })
    }

    /// Verifies an access token: ours, or an external one when configured.
    pub fn verify_access(&self, token: &str) -> Result<Principal, AuthError> {
        // Route by the unverified `iss` only to pick the key; the chosen key's validation
        // then checks everything, `iss` included.
        let issuer = jsonwebtoken::dangerous::insecure_decode_claims::<UnverifiedIssuer>(token)
            .map_err(|_| AuthError::Malformed)?
            .iss;
        match (&self.external, issuer.as_deref()) {
            (Some(external), issuer) if issuer != Some(ISSUER) => {
                let claims = jsonwebtoken::decode::<ExternalClaims>(
                    token,
                    &external.key,
                    &external.validation,
                )?
                .claims;
                Ok(Principal {
                    subject: claims.sub,
                    role: Role::parse(&claims.role).map_err(|_| AuthError::InvalidClaims)?,
                    origin: Origin::External,
                    docs: claims.docs,
                    expires_at: claims.exp,
                    session: None,
                })
            }
            _ => {
                let claims = jsonwebtoken::decode::<AccessClaims>(
                    token,
                    &self.decoding,
                    &self.access_validation,
                )?
                .claims;
                Ok(Principal {
                    subject: claims.sub,
                    role: Role::parse(&claims.role).map_err(|_| AuthError::InvalidClaims)?,
                    origin: Origin::Local,
                    docs: None,
                    expires_at: claims.exp,
                    session: Some(claims.sid),
                })
            }
        }
    }

    /// Verifies a document token minted by [`Authenticator::issue_doc_token`].
    pub fn verify_doc_token(&self, token: &str) -> Result<DocGrant, AuthError> {
        let claims =
            jsonwebtoken::decode::<DocClaims>(token, &self.decoding, &self.doc_validation)?.claims;
        Ok(DocGrant {
            doc: claims.doc,
            access: claims.access,
            expires_at: claims.exp,
        })
    }

    /// Whether `presented` is the configured API key (constant time). Always false when no
    /// key is configured.
    pub fn check_api_key(&self, presented: &str) -> bool {
        let Some(expected) = &self.api_key_digest else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(presented.ct_eq(expected))
    }

    /// How long access tokens live.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// The bounded password hasher (login, registration, account creation).
    pub fn passwords(&self) -> &password::Passwords {
        &self.passwords
    }
}

/// The password hasher sized from the configuration: as many hashes at once as cores by
/// default, and twice that many waiting.
fn passwords_from_config(config: &Config) -> password::Passwords {
    let concurrency = config.password_hash_concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let queue = config
        .password_hash_queue
        .unwrap_or(concurrency.saturating_mul(2));
    password::Passwords::new(concurrency, queue)
}

impl External {
    fn new(key: DecodingKey, algorithm: Algorithm, config: &Config) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&config.external_jwt_audience]);
        let mut required = vec!["exp", "aud", "sub"];
        if let Some(issuer) = &config.external_jwt_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self { key, validation }
    }
}

/// An RSA (RS256) or EC P-256 (ES256) public key from PEM.
fn public_key(pem: &[u8]) -> Option<(DecodingKey, Algorithm)> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Some((key, Algorithm::RS256));
    }
    DecodingKey::from_ec_pem(pem)
        .ok()
        .map(|key| (key, Algorithm::ES256))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use std::net::SocketAddr;

    const SECRET: &str = "unit-test-secret-that-is-at-least-32-bytes-long";
    const RSA_PRIVATE: &[u8] = include_bytes!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/auth/testdata/rsa_public.pem"
    );
    const EC_PRIVATE: &[u8] = include_bytes!("testdata/ec_private.pem");
    const EC_PUBLIC: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/auth/testdata/ec_public.pem"
    );

    fn config(adjust: impl FnOnce(&mut Config)) -> Config {
        let address: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut config = Config::with_defaults(address, "/tmp/unused".into());
        config.jwt_secret = Some(SECRET.into());
        adjust(&mut config);
        config
    }

    fn authenticator() -> Authenticator {
        Authenticator::from_config(&config(|_| {})).expect("authenticator")
    }

    fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).expect("encode")
    }

    fn access_claims(now: u64) -> serde_json::Value {
        json!({
            "iss": ISSUER, "aud": ACCESS_AUDIENCE, "sub": "user-1", "role": "student",
            "sid": "login-1", "iat": now, "nbf": now, "exp": now + 600,
        })
    }

    fn hs256(claims: &serde_json::Value) -> String {
        sign(
            Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
    }

    #[test]
    fn issued_access_tokens_verify() {
        let auth = authenticator();
        let issued = auth
            .issue_access("user-1", Role::Faculty, "login-1")
            .expect("issue");
        assert_eq!(issued.expires_in, 900);
        let principal = auth.verify_access(&issued.token).expect("verify");
        assert_eq!(principal.subject, "user-1");
        assert_eq!(principal.role, Role::Faculty);
        assert_eq!(principal.origin, Origin::Local);
    }

    #[test]
    fn alg_none_is_rejected() {
        let auth = authenticator();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(access_claims(now_secs()).to_string());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert!(auth.verify_access(&token).is_err(), "{token}");
        }
    }

    #[test]
    fn forged_signatures_are_rejected() {
        let auth = authenticator();
        let forged = sign(
            Header::new(Algorithm::HS256),
            &access_claims(now_secs()),
            &EncodingKey::from_secret(b"some-other-secret-of-at-least-32-bytes!!"),
        );
        assert!(matches!(
            auth.verify_access(&forged),
            Err(AuthError::BadSignature)
        ));
        // A valid token with its payload swapped keeps a signature that no longer matches.
        let good = hs256(&access_claims(now_secs()));
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut admin = access_claims(now_secs());
        admin["role"] = json!("admin");
        let tampered_payload = URL_SAFE_NO_PAD.encode(admin.to_string());
        parts[1] = &tampered_payload;
        assert!(matches!(
            auth.verify_access(&parts.join(".")),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_rejected() {
        let auth = authenticator();
        let now = now_secs();
        let mut expired = access_claims(now - 3600);
        expired["exp"] = json!(now - 120);
        assert!(matches!(
            auth.verify_access(&hs256(&expired)),
            Err(AuthError::Expired)
        ));
        let mut early = access_claims(now);
        early["nbf"] = json!(now + 600);
        assert!(matches!(
            auth.verify_access(&hs256(&early)),
            Err(AuthError::NotYetValid)
        ));
    }

    #[test]
    fn missing_time_claims_are_rejected() {
        let auth = authenticator();
        for claim in ["exp", "nbf", "iat"] {
            let mut claims = access_claims(now_secs());
            claims
                .as_object_mut()
                .expect("object")
                .remove(claim)
                .expect("present");
            assert!(auth.verify_access(&hs256(&claims)).is_err(), "{claim}");
        }
    }

    #[test]
    fn wrong_audience_and_issuer_are_rejected() {
        let auth = authenticator();
        let mut claims = access_claims(now_secs());
        claims["aud"] = json!("someone-else");
        assert!(matches!(
            auth.verify_access(&hs256(&claims)),
            Err(AuthError::WrongAudience)
        ));
        let mut claims = access_claims(now_secs());
        claims["iss"] = json!("evil");
        assert!(matches!(
            auth.verify_access(&hs256(&claims)),
            Err(AuthError::WrongIssuer)
        ));
    }

    #[test]
    fn doc_tokens_and_access_tokens_are_not_interchangeable() {
        let auth = authenticator();
        let doc = auth
            .issue_doc_token("class/notes", DocAccess::Read)
            .expect("doc");
        let grant = auth.verify_doc_token(&doc.token).expect("verify");
        assert_eq!(
            (grant.doc.as_str(), grant.access),
            ("class/notes", DocAccess::Read)
        );
        assert!(grant.expires_at > now_secs());
        // Rejected (by its claims' shape or its audience, whichever is checked first).
        assert!(auth.verify_access(&doc.token).is_err());
        let access = auth
            .issue_access("u", Role::Student, "login-1")
            .expect("access");
        assert!(auth.verify_doc_token(&access.token).is_err());
    }

    fn external_claims(now: u64) -> serde_json::Value {
        json!({
            "iss": "https://idp.example.edu", "aud": "lectern", "sub": "ext-42",
            "role": "faculty", "docs": ["class/notes"], "iat": now, "exp": now + 600,
        })
    }

    #[test]
    fn external_rs256_tokens_verify_and_hs_rs_confusion_is_rejected() {
        let auth = Authenticator::from_config(&config(|config| {
            config.external_jwt_public_key_pem = Some(RSA_PUBLIC.into());
        }))
        .expect("authenticator");
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa key");
        let token = sign(
            Header::new(Algorithm::RS256),
            &external_claims(now_secs()),
            &key,
        );
        let principal = auth.verify_access(&token).expect("verify");
        assert_eq!(principal.subject, "ext-42");
        assert_eq!(principal.role, Role::Faculty);
        assert_eq!(principal.origin, Origin::External);
        assert_eq!(principal.docs, Some(vec!["class/notes".to_owned()]));

        // The classic confusion attack: HS256 keyed with the public key's PEM bytes.
        let public_pem = std::fs::read(RSA_PUBLIC).expect("public key");
        let confused = sign(
            Header::new(Algorithm::HS256),
            &external_claims(now_secs()),
            &EncodingKey::from_secret(&public_pem),
        );
        assert!(matches!(
            auth.verify_access(&confused),
            Err(AuthError::WrongAlgorithm)
        ));

        let mut wrong_audience = external_claims(now_secs());
        wrong_audience["aud"] = json!("another-app");
        let token = sign(Header::new(Algorithm::RS256), &wrong_audience, &key);
        assert!(matches!(
            auth.verify_access(&token),
            Err(AuthError::WrongAudience)
        ));

        let mut expired = external_claims(now_secs());
        expired["exp"] = json!(now_secs() - 120);
        let token = sign(Header::new(Algorithm::RS256), &expired, &key);
        assert!(matches!(
            auth.verify_access(&token),
            Err(AuthError::Expired)
        ));
    }

    #[test]
    fn external_es256_and_hs256_tokens_verify() {
        let auth = Authenticator::from_config(&config(|config| {
            config.external_jwt_public_key_pem = Some(EC_PUBLIC.into());
        }))
        .expect("authenticator");
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec key");
        let token = sign(
            Header::new(Algorithm::ES256),
            &external_claims(now_secs()),
            &key,
        );
        assert_eq!(
            auth.verify_access(&token).expect("verify").subject,
            "ext-42"
        );

        let shared = "shared-secret-with-the-school-idp-32+bytes";
        let auth = Authenticator::from_config(&config(|config| {
            config.external_jwt_secret = Some(shared.into());
            config.external_jwt_issuer = Some("https://idp.example.edu".into());
        }))
        .expect("authenticator");
        let token = sign(
            Header::new(Algorithm::HS256),
            &external_claims(now_secs()),
            &EncodingKey::from_secret(shared.as_bytes()),
        );
        assert_eq!(
            auth.verify_access(&token).expect("verify").role,
            Role::Faculty
        );
        let mut other_issuer = external_claims(now_secs());
        other_issuer["iss"] = json!("https://elsewhere.example");
        let token = sign(
            Header::new(Algorithm::HS256),
            &other_issuer,
            &EncodingKey::from_secret(shared.as_bytes()),
        );
        assert!(matches!(
            auth.verify_access(&token),
            Err(AuthError::WrongIssuer)
        ));
        // Our own tokens still verify next to an external issuer.
        let ours = auth
            .issue_access("local", Role::Student, "login-1")
            .expect("issue");
        assert_eq!(
            auth.verify_access(&ours.token).expect("verify").origin,
            Origin::Local
        );
    }

    #[test]
    fn short_secrets_are_refused_at_startup() {
        let error = Authenticator::from_config(&config(|config| {
            config.jwt_secret = Some("short".into());
        }))
        .expect_err("too short");
        assert!(matches!(error, AuthSetupError::SecretTooShort { .. }));
    }

    #[test]
    fn api_keys_compare_exactly() {
        let key = "embedder-key-of-at-least-32-bytes-long";
        let auth = Authenticator::from_config(&config(|config| {
            config.api_key = Some(key.into());
        }))
        .expect("authenticator");
        assert!(auth.check_api_key(key));
        assert!(!auth.check_api_key(&key[..key.len() - 1]));
        assert!(!auth.check_api_key(""));
        assert!(!authenticator().check_api_key(key), "no key configured");
    }

    #[test]
    fn short_api_keys_are_refused_at_startup() {
        let error = Authenticator::from_config(&config(|config| {
            config.api_key = Some("x".repeat(MIN_SECRET_BYTES - 1).into());
        }))
        .expect_err("too short");
        assert_eq!(error.to_string(), "--api-key must be at least 32 bytes");
        Authenticator::from_config(&config(|config| {
            config.api_key = Some("x".repeat(MIN_SECRET_BYTES).into());
        }))
        .expect("32 bytes are enough");
    }
}
