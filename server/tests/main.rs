//! Server integration tests: the real server on 127.0.0.1:0, real sockets, real databases.
//!
//! `node` runs the end-to-end suite with stock Yjs clients from npm (tests/node).

mod ai;
mod ai_nodes;
mod ai_outcomes;
mod ai_queue;
mod api;
mod browser;
mod cluster_limits;
mod eval;
mod export;
mod history;
mod hostile_auth;
mod hostile_files;
mod hostile_input;
mod hostile_transport;
mod hostile_ws;
mod http;
mod materials;
mod node;
mod notifications;
mod sessions;
mod speech;
mod support;
mod web;
mod webhooks;
mod websocket;
