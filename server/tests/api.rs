//! The REST API through the real HTTP server: accounts, tokens, classrooms, limits, OpenAPI.
//! Flows that touch the database run on SQLite and on PostgreSQL (a fresh database; under
//! `CI=true` an unreachable PostgreSQL fails the test).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use lectern::Config;

use crate::support::TestServer;

/// The signing secret tests that forge tokens configure.
const SECRET: &str = "integration-test-secret-at-least-32-bytes";

/// A server plus an HTTP client for it (also used by the `sessions` tests).
pub(crate) struct Api {
    server: TestServer,
    client: reqwest::Client,
    pub(crate) backend: &'static str,
}

/// One server on SQLite and, when PostgreSQL is reachable, one on a fresh PostgreSQL
/// database; `adjust` applies to both.
pub(crate) async fn servers(adjust: impl Fn(&mut Config)) -> Vec<Api> {
    let mut apis = vec![Api::new(
        TestServer::start(|config| adjust(config)).await,
        "sqlite",
    )];
    if let Some(url) = lectern_db::testing::postgres_url().await {
        let server = TestServer::start(|config| {
            config.database_url = Some(url);
            adjust(config);
        })
        .await;
        apis.push(Api::new(server, "postgres"));
    }
    apis
}

/// A server on SQLite only, for checks that do not depend on the database.
pub(crate) async fn sqlite(adjust: impl FnOnce(&mut Config)) -> Api {
    Api::new(TestServer::start(adjust).await, "sqlite")
}

impl Api {
    /// An API client for a SQLite server started by the caller.
    pub(crate) fn on(server: TestServer) -> Self {
        Self::new(server, "sqlite")
    }

    fn new(server: TestServer, backend: &'static str) -> Self {
        Self {
            server,
            client: crate::support::http_client(),
            backend,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, body)
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let url = self.server.http(&format!("/api/v1{path}"));
        self.send(self.client.post(url).json(&body), token).await
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let url = self.server.http(&format!("/api/v1{path}"));
        self.send(self.client.get(url), token).await
    }

    pub(crate) async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let url = self.server.http(&format!("/api/v1{path}"));
        self.send(self.client.delete(url), token).await
    }

    pub(crate) async fn put(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let url = self.server.http(&format!("/api/v1{path}"));
        self.send(self.client.put(url).json(&body), token).await
    }

    /// Registers an account and returns its session.
    pub(crate) async fn register(&self, email: &str, role: &str) -> Session {
        let (status, body) = self
            .post(
                "/auth/register",
                None,
                json!({"email": email, "display_name": email, "password": "correct horse", "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{} {body}", self.backend);
        Session::from(body)
    }

    pub(crate) fn server(&self) -> &TestServer {
        &self.server
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` with `token`; the status and the JSON body (`null` when empty).
    pub(crate) async fn call(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.send(request, token).await
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// The useful parts of a session response.
pub(crate) struct Session {
    pub(crate) access: String,
    refresh: String,
    pub(crate) user_id: String,
}

impl From<Value> for Session {
    fn from(body: Value) -> Self {
        Self {
            access: body["access_token"].as_str().expect("access_token").into(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .into(),
            user_id: body["user"]["id"].as_str().expect("user id").into(),
        }
    }
}

pub(crate) fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn register_login_refresh_logout() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let registered = api.register("Ada@Example.edu", "faculty").await;
        let (status, me) = api.get("/me", Some(&registered.access)).await;
        assert_eq!(status, StatusCode::OK, "{backend} {me}");
        assert_eq!(me["email"], "ada@example.edu");
        assert_eq!(me["role"], "faculty");

        let (status, body) = api
            .post(
                "/auth/register",
                None,
                json!({"email": "ada@example.edu", "display_name": "Again", "password": "whatever1", "role": "student"}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "email_taken"),
            "{backend}"
        );
        let (status, body) = api
            .post(
                "/auth/register",
                None,
                json!({"email": "eve@example.edu", "display_name": "Eve", "password": "whatever1", "role": "admin"}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "admins cannot self-register"
        );

        let (status, body) = api
            .post(
                "/auth/login",
                None,
                json!({"email": "ada@example.edu", "password": "wrong horse"}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
        let (status, body) = api
            .post(
                "/auth/login",
                None,
                json!({"email": "nobody@example.edu", "password": "wrong horse"}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );

        let (status, body) = api
            .post(
                "/auth/login",
                None,
                json!({"email": "ADA@example.edu", "password": "correct horse"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let login = Session::from(body);
        assert_eq!(login.user_id, registered.user_id);

        let (status, body) = api
            .post(
                "/auth/refresh",
                None,
                json!({"refresh_token": login.refresh}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        let refreshed = Session::from(body);
        assert_ne!(refreshed.refresh, login.refresh, "refresh tokens rotate");
        assert_eq!(
            api.get("/me", Some(&refreshed.access)).await.0,
            StatusCode::OK
        );

        let (status, _) = api
            .post(
                "/auth/logout",
                None,
                json!({"refresh_token": refreshed.refresh}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = api
            .post(
                "/auth/refresh",
                None,
                json!({"refresh_token": refreshed.refresh}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_refresh_token"),
            "{backend}: logged out"
        );
        // Logging out one login leaves the other (registration) family alone.
        let (status, _) = api
            .post(
                "/auth/refresh",
                None,
                json!({"refresh_token": registered.refresh}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend}");
        api.stop().await;
    }
}

#[tokio::test]
async fn reusing_a_refresh_token_revokes_its_family() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let first = api.register("bo@example.edu", "student").await;
        let (status, body) = api
            .post(
                "/auth/refresh",
                None,
                json!({"refresh_token": first.refresh}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {body}");
        let second = Session::from(body);

        // An attacker (or a confused client) replays the used token.
        let (status, body) = api
            .post(
                "/auth/refresh",
                None,
                json!({"refresh_token": first.refresh}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "refresh_token_reused"),
            "{backend}"
        );
        // The legitimate successor died with its family.
        let (status, body) = api
            .post(
                "/auth/refresh",
                None,
                json!({"refresh_token": second.refresh}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_refresh_token"),
            "{backend}"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn bad_access_tokens_are_401_with_their_code() {
    let shared = "external-idp-shared-secret-32-bytes-or-more";
    let api = sqlite(|config| {
        config.jwt_secret = Some(SECRET.into());
        config.external_jwt_secret = Some(shared.into());
        config.external_jwt_issuer = Some("https://idp.example.edu".into());
    })
    .await;
    let (status, body) = api.get("/me", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    let sign = |claims: &Value, secret: &str| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    };
    let claims = |exp: u64| {
        json!({"iss": "lectern", "aud": "lectern-api", "sub": "someone", "role": "faculty",
               "sid": "login-1", "iat": now() - 7200, "nbf": now() - 7200, "exp": exp})
    };
    let expired = sign(&claims(now() - 3600), SECRET);
    let (status, body) = api.get("/me", Some(&expired)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );

    let forged = sign(
        &claims(now() + 600),
        "not-the-server-secret-but-32-bytes-long",
    );
    let (status, body) = api.get("/classrooms", Some(&forged)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(now() + 600).to_string())
    );
    let (status, body) = api.get("/classrooms", Some(&unsigned)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let (status, body) = api.get("/classrooms", Some("not a jwt")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    // A valid external token authenticates, but classrooms belong to local accounts.
    let external = sign(
        &json!({"iss": "https://idp.example.edu", "aud": "lectern", "sub": "ext-1",
                "role": "faculty", "iat": now(), "exp": now() + 600}),
        shared,
    );
    let (status, body) = api.get("/classrooms", Some(&external)).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    api.stop().await;
}

#[tokio::test]
async fn classrooms_join_codes_and_membership() {
    for api in servers(|_| {}).await {
        let backend = api.backend;
        let teacher = api.register("teacher@example.edu", "faculty").await;
        let alice = api.register("alice@example.edu", "student").await;
        let mallory = api.register("mallory@example.edu", "student").await;

        let (status, body) = api
            .post(
                "/classrooms",
                Some(&alice.access),
                json!({"name": "Not mine"}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}: students cannot create"
        );

        let (status, class) = api
            .post(
                "/classrooms",
                Some(&teacher.access),
                json!({"name": "Biology 101"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend} {class}");
        let id = class["id"].as_str().expect("id").to_owned();
        let code1 = class["join_code"]
            .as_str()
            .expect("faculty sees the code")
            .to_owned();
        assert_eq!(code1.len(), 8);

        // Typed sloppily: lower case with a dash in the middle.
        let typed = format!("{}-{}", &code1[..4], &code1[4..]).to_lowercase();
        let (status, joined) = api
            .post(
                "/classrooms/join",
                Some(&alice.access),
                json!({"join_code": typed}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {joined}");
        assert_eq!(joined["role"], "student");
        assert_eq!(
            joined["join_code"],
            Value::Null,
            "students do not see the code"
        );

        let (status, members) = api
            .get(&format!("/classrooms/{id}/members"), Some(&alice.access))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {members}");
        let roles: Vec<_> = members
            .as_array()
            .expect("array")
            .iter()
            .map(|member| {
                (
                    member["user_id"].as_str().expect("id"),
                    member["role"].as_str().expect("role"),
                )
            })
            .collect();
        assert_eq!(
            roles,
            [
                (teacher.user_id.as_str(), "faculty"),
                (alice.user_id.as_str(), "student")
            ]
        );

        let (status, body) = api
            .get(&format!("/classrooms/{id}/members"), Some(&mallory.access))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{backend}: non-members"
        );
        let (status, body) = api
            .get("/classrooms/no-such-class/members", Some(&mallory.access))
            .await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

        let (status, body) = api
            .post(
                &format!("/classrooms/{id}/join-code"),
                Some(&alice.access),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "only faculty rotate"
        );
        let (status, rotated) = api
            .post(
                &format!("/classrooms/{id}/join-code"),
                Some(&teacher.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend} {rotated}");
        let code2 = rotated["join_code"].as_str().expect("code").to_owned();
        assert_ne!(code2, code1);

        // The rotated-away code is indistinguishable from one that never existed.
        let (status, body) = api
            .post(
                "/classrooms/join",
                Some(&mallory.access),
                json!({"join_code": code1}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "invalid_join_code"),
            "{backend}"
        );
        let (status, _) = api
            .post(
                "/classrooms/join",
                Some(&mallory.access),
                json!({"join_code": code2}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        let (status, body) = api
            .delete(
                &format!("/classrooms/{id}/members/{}", alice.user_id),
                Some(&mallory.access),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "students cannot remove others"
        );
        let (status, _) = api
            .delete(
                &format!("/classrooms/{id}/members/{}", mallory.user_id),
                Some(&teacher.access),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{backend}");
        let (status, _) = api
            .get(&format!("/classrooms/{id}"), Some(&mallory.access))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "removed members lose access");

        let (status, _) = api
            .delete(&format!("/classrooms/{id}/members/me"), Some(&alice.access))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, mine) = api.get("/classrooms", Some(&alice.access)).await;
        assert_eq!((status, mine), (StatusCode::OK, json!([])));

        let (status, body) = api
            .delete(
                &format!("/classrooms/{id}/members/me"),
                Some(&teacher.access),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "last_faculty"),
            "{backend}"
        );
        let (status, mine) = api.get("/classrooms", Some(&teacher.access)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(mine[0]["id"], id.as_str());
        assert_eq!(mine[0]["join_code"], code2.as_str());
        api.stop().await;
    }
}

#[tokio::test]
async fn rate_limits_are_per_user_and_per_login_email() {
    let api = sqlite(|config| {
        config.rate_limit_burst = 3;
        config.rate_limit_per_minute = 1;
        config.login_rate_limit_per_minute = 3;
    })
    .await;
    let first = api.register("one@example.edu", "student").await;
    let second = api.register("two@example.edu", "student").await;
    for _ in 0..3 {
        assert_eq!(api.get("/me", Some(&first.access)).await.0, StatusCode::OK);
    }
    let response = api
        .client
        .get(api.server.http("/api/v1/me"))
        .bearer_auth(&first.access)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "rate_limited");
    // Another user from the same address is unaffected.
    assert_eq!(api.get("/me", Some(&second.access)).await.0, StatusCode::OK);

    // Registration spent one login attempt for one@; two more wrong guesses, then 429.
    let guess = json!({"email": "one@example.edu", "password": "guess-guess"});
    for _ in 0..2 {
        let (status, body) = api.post("/auth/login", None, guess.clone()).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    let (status, body) = api.post("/auth/login", None, guess).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let (status, _) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "two@example.edu", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "other emails are unaffected");
    api.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_json_errors() {
    let api = sqlite(|_| {}).await;
    let huge = "x".repeat(100 * 1024);
    let (status, body) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "a@example.edu", "password": huge}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    let response = api
        .client
        .post(api.server.http("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(code(&body), "invalid_request");

    let (status, body) = api.get("/no-such-endpoint", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    api.stop().await;
}

#[tokio::test]
async fn doc_tokens_are_minted_only_with_the_api_key() {
    let api = sqlite(|config| {
        config.jwt_secret = Some(SECRET.into());
        config.api_key = Some("embedder-secret-key-of-at-least-32-bytes".into());
    })
    .await;
    let request = json!({"doc": "course/notes", "access": "read"});
    let (status, body) = api
        .post("/doc-tokens", Some("wrong-key"), request.clone())
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    let (status, body) = api.post("/doc-tokens", None, request.clone()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );

    let (status, body) = api
        .post(
            "/doc-tokens",
            Some("embedder-secret-key-of-at-least-32-bytes"),
            request,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["doc"], "course/notes");
    assert_eq!(body["access"], "read");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.set_audience(&["lectern-doc"]);
    let claims = jsonwebtoken::decode::<Value>(
        body["token"].as_str().expect("token"),
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("a valid document token")
    .claims;
    assert_eq!(claims["doc"], "course/notes");
    assert_eq!(claims["access"], "read");

    // A document token is not an access token.
    let (status, body) = api.get("/me", body["token"].as_str()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    api.stop().await;
}

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let api = sqlite(|_| {}).await;
    let (status, document) = api.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.")),
        "{document}"
    );
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/doc-tokens", "post"),
        ("/api/v1/classrooms", "get"),
        ("/api/v1/classrooms", "post"),
        ("/api/v1/classrooms/join", "post"),
        ("/api/v1/classrooms/{id}", "get"),
        ("/api/v1/classrooms/{id}/join-code", "post"),
        ("/api/v1/classrooms/{id}/members", "get"),
        ("/api/v1/classrooms/{id}/members/{user_id}", "delete"),
        ("/api/v1/classrooms/{id}/sessions", "get"),
        ("/api/v1/documents/{doc}", "get"),
        ("/api/v1/classrooms/{id}/sessions", "post"),
        ("/api/v1/classrooms/{id}/sessions/current", "get"),
        ("/api/v1/classrooms/{id}/templates", "post"),
        ("/api/v1/sessions/{id}", "get"),
        ("/api/v1/sessions/{id}/lock", "post"),
        ("/api/v1/sessions/{id}/unlock", "post"),
        ("/api/v1/sessions/{id}/end", "post"),
        ("/api/v1/sessions/{id}/focus", "put"),
        ("/api/v1/sessions/{id}/handouts", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
    assert!(
        codes
            .as_array()
            .is_some_and(|codes| codes.contains(&json!("refresh_token_reused"))),
        "{codes}"
    );
    api.stop().await;
}
