//! A read-only replica of one shared document, kept in sync over the server's WebSocket as
//! any y-websocket client would: what the suite reads is what a user's client shows.

use std::time::Instant;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

use crate::EvalError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One document's replica. Every update received bumps a counter that waits are woken by.
#[derive(Debug)]
pub(crate) struct Replica {
    doc: Doc,
    updates: watch::Receiver<u64>,
    reader: JoinHandle<()>,
    /// Kept so the socket stays open while the replica lives.
    _sink: SplitSink<Socket, Message>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Replica {
    /// Opens `doc_id` on the server at `ws_base` (`ws://host:port`) with `token`.
    pub(crate) async fn open(ws_base: &str, doc_id: &str, token: &str) -> Result<Self, EvalError> {
        let url = format!("{ws_base}/ws/{doc_id}?token={token}");
        let (socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|source| EvalError::WebSocket {
                doc_id: doc_id.to_owned(),
                source: Box::new(source),
            })?;
        let (mut sink, mut stream) = socket.split();
        let step1 =
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()));
        sink.send(Message::Binary(step1.encode_v1().into()))
            .await
            .map_err(|source| EvalError::WebSocket {
                doc_id: doc_id.to_owned(),
                source: Box::new(source),
            })?;
        let doc = Doc::new();
        let (counter, updates) = watch::channel(0u64);
        let replica = doc.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Binary(bytes) = message else {
                    continue;
                };
                // Awareness, custom and step-1 messages carry nothing the replica shows.
                let update = match yrs::sync::Message::decode_v1(&bytes) {
                    Ok(yrs::sync::Message::Sync(
                        yrs::sync::SyncMessage::SyncStep2(update)
                        | yrs::sync::SyncMessage::Update(update),
                    )) => update,
                    _ => continue,
                };
                let Ok(update) = Update::decode_v1(&update) else {
                    break;
                };
                if replica.transact_mut().apply_update(update).is_err() {
                    break;
                }
                counter.send_modify(|count| *count += 1);
            }
            // Dropping the counter tells waiters that the socket is gone.
        });
        Ok(Self {
            doc,
            updates,
            reader,
            _sink: sink,
        })
    }

    /// Waits until `check` holds on the replica (checked now and after every update);
    /// returns its value and when it was first seen to hold.
    pub(crate) async fn until<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut check: impl FnMut(&Doc) -> Option<T>,
    ) -> Result<(T, Instant), EvalError> {
        loop {
            if let Some(value) = check(&self.doc) {
                return Ok((value, Instant::now()));
            }
            self.changed(deadline, what).await?;
        }
    }

    /// Waits for the next update.
    pub(crate) async fn changed(&mut self, deadline: Instant, what: &str) -> Result<(), EvalError> {
        match tokio::time::timeout_at(deadline.into(), self.updates.changed()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EvalError::Unexpected(format!(
                "the WebSocket closed while waiting for {what}"
            ))),
            Err(_) => Err(EvalError::Timeout(what.to_owned())),
        }
    }

    /// A future that resolves on the next update (or when the socket closes); for waiting
    /// on several replicas at once.
    pub(crate) async fn updated(&mut self) {
        let _ = self.updates.changed().await;
    }

    pub(crate) fn doc(&self) -> &Doc {
        &self.doc
    }
}

/// Root map `name` as JSON (`{}` when absent).
pub(crate) fn map_json(doc: &Doc, name: &str) -> Value {
    let txn = doc.transact();
    match txn.get_map(name) {
        Some(map) => serde_json::to_value(map.to_json(&txn)).unwrap_or(Value::Null),
        None => Value::Object(Default::default()),
    }
}

/// Root array `name` as JSON (`[]` when absent).
pub(crate) fn array_json(doc: &Doc, name: &str) -> Vec<Value> {
    let txn = doc.transact();
    match txn.get_array(name) {
        Some(array) => serde_json::to_value(array.to_json(&txn))
            .ok()
            .and_then(|value| value.as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Root text `name` (empty when absent).
pub(crate) fn text(doc: &Doc, name: &str) -> String {
    let txn = doc.transact();
    txn.get_text(name)
        .map(|text| text.get_string(&txn))
        .unwrap_or_default()
}
