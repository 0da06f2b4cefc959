//! The REST calls a user's client makes, as JSON in and out. Responses are read as
//! `serde_json::Value` on purpose: the suite must keep working when the server adds fields.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::EvalError;

/// An HTTP client signed in as one user.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    pub(crate) token: String,
}

impl Api {
    /// Signs up a faculty account on the server at `base` (`http://host:port`).
    pub(crate) async fn sign_up_faculty(base: &str) -> Result<Self, EvalError> {
        // With the workspace's features unified, reqwest has rustls without a crypto
        // provider and will not build a client until one is installed (even for plain
        // HTTP); installing one twice is harmless.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|source| EvalError::Http {
                what: "building the HTTP client".to_owned(),
                source,
            })?;
        let mut api = Self {
            client,
            base: base.to_owned(),
            token: String::new(),
        };
        // A server the suite only connects to may have seen earlier runs: a fresh address
        // each time.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let email = format!("eval-teacher-{nanos}@school.test");
        let session = api
            .post(
                "/auth/register",
                &json!({
                    "email": email,
                    "display_name": "Evaluation teacher",
                    "password": "a long evaluation password",
                    "role": "faculty",
                }),
                StatusCode::CREATED,
            )
            .await?;
        api.token = string(&session, "access_token")?;
        Ok(api)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        body: &Value,
        expected: StatusCode,
    ) -> Result<Value, EvalError> {
        let request = self.client.post(self.url(path)).json(body);
        self.send(path, request, expected).await
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, EvalError> {
        let request = self.client.get(self.url(path));
        self.send(path, request, StatusCode::OK).await
    }

    /// Uploads a file as a course material; returns the material.
    pub(crate) async fn upload(
        &self,
        classroom: &str,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> Result<Value, EvalError> {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let path = format!("/classrooms/{classroom}/materials");
        let request = self.client.post(self.url(&path)).multipart(form);
        self.send(&path, request, StatusCode::ACCEPTED).await
    }

    async fn send(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> Result<Value, EvalError> {
        let request = if self.token.is_empty() {
            request
        } else {
            request.bearer_auth(&self.token)
        };
        let http = |source| EvalError::Http {
            what: path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        let text = response.text().await.map_err(http)?;
        if status != expected {
            return Err(EvalError::Api {
                path: path.to_owned(),
                status: status.as_u16(),
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|_| EvalError::Api {
            path: path.to_owned(),
            status: status.as_u16(),
            body: format!("not JSON: {text}"),
        })
    }
}

/// The string field `key` of a response.
pub(crate) fn string(value: &Value, key: &str) -> Result<String, EvalError> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| EvalError::Unexpected(format!("no `{key}` in {value}")))
}
