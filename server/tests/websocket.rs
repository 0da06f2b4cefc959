//! WebSocket behaviour at the byte level: close codes for bad input, limits, shutdown.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Text, Transact};

use lectern_collab::protocol;

use crate::support::{TestServer, close_code, connect, send_binary};

/// These tests are about the y-sync protocol, so tokenless clients may write.
fn anonymous_writers(config: &mut lectern::Config) {
    config.anonymous_access = lectern::config::AnonymousAccess::Write;
}

/// Reads binary frames until one decodes as sync step 2.
async fn read_sync_step2(socket: &mut crate::support::Client) -> Vec<u8> {
    loop {
        let message = socket.next().await.expect("socket open").expect("frame");
        if let Message::Binary(bytes) = message
            && let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(update))) =
                yrs::sync::Message::decode_v1(&bytes)
        {
            return update;
        }
    }
}

#[tokio::test]
async fn a_truncated_frame_closes_with_1007_and_the_room_carries_on() {
    let server = TestServer::start(anonymous_writers).await;
    let mut good = connect(&server.ws("/ws/room")).await;
    let doc = Doc::new();
    let update = {
        let text = doc.get_or_insert_text("body");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "kept");
        txn.encode_update_v1()
    };
    send_binary(&mut good, protocol::encode_update(&update).to_vec()).await;

    let mut bad = connect(&server.ws("/ws/room")).await;
    let frame = protocol::encode_update(&update);
    send_binary(&mut bad, frame[..frame.len() - 2].to_vec()).await;
    assert_eq!(close_code(&mut bad).await, Some(1007));

    let mut late = connect(&server.ws("/ws/room")).await;
    let empty = Doc::new().transact().state_vector();
    send_binary(&mut late, protocol::encode_sync_step1(&empty).to_vec()).await;
    let state = read_sync_step2(&mut late).await;
    let copy = Doc::new();
    copy.transact_mut()
        .apply_update(yrs::Update::decode_v1(&state).expect("decode"))
        .expect("apply");
    let text = copy.get_or_insert_text("body");
    assert_eq!(yrs::GetString::get_string(&text, &copy.transact()), "kept");

    // "Carries on" means the same room with the same members: the state above would also
    // come from a room reloaded from the store after the bad frame took it down, so the
    // good socket, still open, edits again and the late joiner sees that edit live.
    let more = {
        let text = doc.get_or_insert_text("body");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 4, " going");
        txn.encode_update_v1()
    };
    send_binary(&mut good, protocol::encode_update(&more).to_vec()).await;
    let live = async {
        while yrs::GetString::get_string(&text, &copy.transact()) != "kept going" {
            let message = late.next().await.expect("socket open").expect("frame");
            if let Message::Binary(bytes) = message
                && let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update))) =
                    yrs::sync::Message::decode_v1(&bytes)
            {
                copy.transact_mut()
                    .apply_update(yrs::Update::decode_v1(&update).expect("decode"))
                    .expect("apply");
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), live)
        .await
        .expect("the good socket's next edit reaches the late joiner");
    server.stop().await;
}

#[tokio::test]
async fn an_update_past_the_document_limit_closes_with_1009() {
    let server = TestServer::start(|config| {
        anonymous_writers(config);
        config.max_document_bytes = 2_000;
    })
    .await;
    let mut socket = connect(&server.ws("/ws/limited")).await;
    let doc = Doc::new();
    let update = {
        let text = doc.get_or_insert_text("body");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &"z".repeat(10_000));
        txn.encode_update_v1()
    };
    send_binary(&mut socket, protocol::encode_update(&update).to_vec()).await;
    assert_eq!(close_code(&mut socket).await, Some(1009));
    server.stop().await;
}

#[tokio::test]
async fn too_many_documents_on_one_multiplexed_socket_closes_with_1008() {
    let server = TestServer::start(|config| {
        anonymous_writers(config);
        config.max_docs_per_socket = 2;
    })
    .await;
    let mut socket = connect(&server.ws("/ws")).await;
    let step1 = protocol::encode_sync_step1(&Doc::new().transact().state_vector());
    for name in ["one", "two", "three"] {
        let mut frame = Vec::new();
        yrs::encoding::write::Write::write_string(&mut frame, name);
        frame.extend_from_slice(&step1);
        send_binary(&mut socket, frame).await;
    }
    assert_eq!(close_code(&mut socket).await, Some(1008));
    server.stop().await;
}

/// Shutdown drains the node: every socket, single-document or multiplexed, closes with the
/// retryable 4503 (not 1001), so clients reconnect at once and a load balancer sends them
/// to another node.
#[tokio::test]
async fn graceful_shutdown_closes_sockets_with_the_drain_code_4503() {
    let server = TestServer::start(anonymous_writers).await;
    let mut socket = connect(&server.ws("/ws/closing")).await;
    let mut multiplexed = connect(&server.ws("/ws")).await;
    // Make sure both sockets joined their rooms before shutting down.
    let step1 = protocol::encode_sync_step1(&Doc::new().transact().state_vector());
    send_binary(&mut socket, step1.to_vec()).await;
    read_sync_step2(&mut socket).await;
    let mut frame = Vec::new();
    yrs::encoding::write::Write::write_string(&mut frame, "closing-too");
    frame.extend_from_slice(&step1);
    send_binary(&mut multiplexed, frame).await;
    let answer = multiplexed
        .next()
        .await
        .expect("socket open")
        .expect("frame");
    assert!(matches!(answer, Message::Binary(_)), "{answer:?}");
    let stopping = tokio::spawn(server.stop());
    assert_eq!(close_code(&mut socket).await, Some(4503));
    assert_eq!(close_code(&mut multiplexed).await, Some(4503));
    stopping.await.expect("stopped");
}

#[tokio::test]
async fn no_grant_makes_a_sessions_lectern_document_writable() {
    // Anonymous write access (like full document tokens and external tokens' `docs`) never
    // passes through `access::decide`: the server-owned name space is clamped to read.
    let server = TestServer::start(anonymous_writers).await;
    let write = |name: &'static str| {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("body");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, name);
        txn.encode_update_v1()
    };
    for (path, expected) in [
        ("/ws/session/s1/lectern", ""),
        ("/ws/session/s1/notes", "notes"),
    ] {
        let mut writer = connect(&server.ws(path)).await;
        let update = write(if expected.is_empty() {
            "forged"
        } else {
            "notes"
        });
        send_binary(&mut writer, protocol::encode_update(&update).to_vec()).await;
        // Refused updates keep the socket open; a step 1 after the update is answered only
        // once the room has handled the update before it.
        let empty = Doc::new().transact().state_vector();
        send_binary(&mut writer, protocol::encode_sync_step1(&empty).to_vec()).await;
        let state = read_sync_step2(&mut writer).await;
        let copy = Doc::new();
        copy.transact_mut()
            .apply_update(yrs::Update::decode_v1(&state).expect("decode"))
            .expect("apply");
        let text = copy.get_or_insert_text("body");
        assert_eq!(
            yrs::GetString::get_string(&text, &copy.transact()),
            expected,
            "{path}"
        );
    }
}
