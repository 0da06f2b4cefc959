//! Webhooks and their outbox against real databases: a SQLite file and the real
//! PostgreSQL. Every test runs the same assertions on both backends.

use std::collections::HashSet;
use std::time::Duration;

use lectern_db::accounts::{Role, User};
use lectern_db::classrooms::Classroom;
use lectern_db::webhooks::{DeliveryState, NewDelivery, Webhook};
use lectern_db::{Accounts, Classrooms, Database, Webhooks};

use crate::backends;

const LONG: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// A teacher and classroom `c1`.
async fn classroom(database: &Database) {
    Accounts::new(database.clone())
        .create_user(&User {
            id: "teacher".into(),
            email: "teacher@example.edu".into(),
            display_name: "Teacher".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            role: Role::Faculty,
            created_at: 1,
        })
        .await
        .expect("user");
    Classrooms::new(database.clone())
        .create(&Classroom {
            id: "c1".into(),
            name: "Class".into(),
            join_code: "CODE1".into(),
            created_by: "teacher".into(),
            created_at: 10,
        })
        .await
        .expect("classroom");
}

fn webhook(id: &str, events: &[&str]) -> Webhook {
    Webhook {
        id: id.into(),
        classroom_id: "c1".into(),
        url: format!("https://example.com/{id}"),
        events: events.iter().map(|event| (*event).to_owned()).collect(),
        secret: format!("whsec_{id}"),
        created_by: "teacher".into(),
        created_at: 100,
        active: true,
    }
}

fn delivery(id: &str, webhook_id: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        webhook_id: webhook_id.into(),
        event: "session.started".into(),
        body: format!(r#"{{"id":"{id}"}}"#),
    }
}

#[tokio::test]
async fn webhooks_are_stored_listed_capped_and_deleted() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let webhooks = Webhooks::new(database);
        let first = webhook("w1", &["session.started", "member.joined"]);
        assert!(webhooks.create(&first, 2).await.expect("w1"), "{backend}");
        assert!(
            webhooks
                .create(&webhook("w2", &["session.ended"]), 2)
                .await
                .expect("w2"),
            "{backend}"
        );
        assert!(
            !webhooks
                .create(&webhook("w3", &["session.ended"]), 2)
                .await
                .expect("w3"),
            "the cap holds ({backend})"
        );
        assert_eq!(
            webhooks.get("w1").await.expect("get"),
            Some(first.clone()),
            "{backend}"
        );
        assert!(first.wants("member.joined") && !first.wants("session.ended"));
        let listed: Vec<String> = webhooks
            .of_classroom("c1")
            .await
            .expect("list")
            .into_iter()
            .map(|webhook| webhook.id)
            .collect();
        assert_eq!(listed, ["w1", "w2"], "{backend}");

        webhooks
            .enqueue(&[delivery("d1", "w1")])
            .await
            .expect("enqueue");
        assert!(
            webhooks
                .deactivate("c1", "w1", "deleted")
                .await
                .expect("delete"),
            "{backend}"
        );
        assert!(
            !webhooks
                .deactivate("c1", "w1", "deleted")
                .await
                .expect("again"),
            "{backend}"
        );
        assert!(
            !webhooks
                .deactivate("other", "w2", "deleted")
                .await
                .expect("other classroom"),
            "{backend}"
        );
        // Deleted: not listed, its pending delivery failed, and a slot is free again.
        let log = webhooks.deliveries("w1", 10, None).await.expect("log");
        assert_eq!(log[0].state, DeliveryState::Failed, "{backend}");
        assert_eq!(log[0].last_error.as_deref(), Some("deleted"), "{backend}");
        assert!(!webhooks.get("w1").await.expect("get").expect("kept").active);
        assert_eq!(webhooks.of_classroom("c1").await.expect("list").len(), 1);
        assert!(
            webhooks
                .create(&webhook("w3", &["session.ended"]), 2)
                .await
                .expect("w3"),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_claimed_delivery_goes_to_one_holder_until_its_claim_expires() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let webhooks = Webhooks::new(database);
        webhooks
            .create(&webhook("w1", &["x"]), 20)
            .await
            .expect("w1");
        assert_eq!(
            webhooks.next_due_in().await.expect("due"),
            None,
            "{backend}"
        );
        webhooks
            .enqueue(&[delivery("d1", "w1"), delivery("d2", "w1")])
            .await
            .expect("enqueue");
        assert_eq!(
            webhooks.next_due_in().await.expect("due"),
            Some(Duration::ZERO),
            "{backend}"
        );

        let a = webhooks.claim("a", 1, LONG).await.expect("a");
        let b = webhooks.claim("b", 10, LONG).await.expect("b");
        assert_eq!(a.len(), 1, "{backend}");
        assert_eq!(b.len(), 1, "{backend}");
        assert_ne!(a[0].id, b[0].id, "{backend}");
        assert!(
            webhooks.claim("c", 10, LONG).await.expect("c").is_empty(),
            "both held ({backend})"
        );
        // Only the holder records an outcome.
        assert!(
            !webhooks.delivered(&a[0].id, "b", 200).await.expect("b"),
            "{backend}"
        );
        assert!(webhooks.delivered(&a[0].id, "a", 204).await.expect("a"));
        assert!(
            !webhooks.delivered(&a[0].id, "a", 204).await.expect("twice"),
            "{backend}"
        );

        // A holder that stops gives its claims back at once.
        webhooks.release_all("b").await.expect("release");
        let again = webhooks.claim("c", 10, LONG).await.expect("c");
        assert_eq!(again.len(), 1, "{backend}");
        assert_eq!(again[0].id, b[0].id, "{backend}");

        // A claim that expires (its holder died) makes the row claimable again.
        webhooks.release_all("c").await.expect("release");
        let short = webhooks
            .claim("dying", 10, Duration::from_millis(1))
            .await
            .expect("dying");
        assert_eq!(short.len(), 1, "{backend}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let taken = loop {
            let taken = webhooks.claim("d", 10, LONG).await.expect("d");
            if !taken.is_empty() || std::time::Instant::now() > deadline {
                break taken;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(taken.len(), 1, "{backend}");
        assert!(
            !webhooks
                .delivered(&taken[0].id, "dying", 200)
                .await
                .expect("late"),
            "the old holder's result is refused ({backend})"
        );

        let log = webhooks.deliveries("w1", 10, None).await.expect("log");
        let delivered = log.iter().find(|row| row.id == a[0].id).expect("a's row");
        assert_eq!(delivered.state, DeliveryState::Delivered, "{backend}");
        assert_eq!(delivered.attempts, 1, "{backend}");
        assert_eq!(delivered.last_status, Some(204), "{backend}");
        assert!(delivered.delivered_at_ms.is_some(), "{backend}");
    }
}

/// Many claimers at once never get the same row twice (PostgreSQL: SKIP LOCKED).
#[tokio::test]
async fn concurrent_claimers_share_the_rows_without_overlap() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let webhooks = Webhooks::new(database);
        webhooks
            .create(&webhook("w1", &["x"]), 20)
            .await
            .expect("w1");
        let rows: Vec<NewDelivery> = (0..40).map(|n| delivery(&format!("d{n}"), "w1")).collect();
        webhooks.enqueue(&rows).await.expect("enqueue");
        let claimers = (0..8).map(|n| {
            let webhooks = webhooks.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = webhooks
                        .claim(&format!("h{n}"), 3, LONG)
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|delivery| delivery.id));
                }
            })
        });
        let mut seen = HashSet::new();
        let mut total = 0;
        for claimer in claimers {
            for id in claimer.await.expect("claimer") {
                total += 1;
                seen.insert(id);
            }
        }
        assert_eq!(total, 40, "every row claimed once ({backend})");
        assert_eq!(seen.len(), 40, "{backend}");
    }
}

#[tokio::test]
async fn failed_attempts_are_retried_until_the_retry_window_closes() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let webhooks = Webhooks::new(database);
        webhooks
            .create(&webhook("w1", &["x"]), 20)
            .await
            .expect("w1");
        webhooks
            .enqueue(&[delivery("d1", "w1")])
            .await
            .expect("enqueue");

        let claimed = webhooks.claim("a", 1, LONG).await.expect("claim");
        let state = webhooks
            .attempt_failed("d1", "a", Some(503), "HTTP 503", LONG, DAY)
            .await
            .expect("failed");
        assert_eq!(state, Some(DeliveryState::Pending), "{backend}");
        assert_eq!(claimed.len(), 1);
        // Not due for a minute: nothing to claim, and the wait says so.
        assert!(
            webhooks
                .claim("a", 1, LONG)
                .await
                .expect("claim")
                .is_empty()
        );
        let due = webhooks.next_due_in().await.expect("due").expect("pending");
        assert!(
            due > Duration::from_secs(50) && due <= LONG,
            "{due:?} ({backend})"
        );
        let row = &webhooks.deliveries("w1", 1, None).await.expect("log")[0];
        assert_eq!(
            (row.attempts, row.last_status, row.last_error.as_deref()),
            (1, Some(503), Some("HTTP 503")),
            "{backend}"
        );

        // A retry that would fall outside the window fails the delivery instead.
        webhooks
            .enqueue(&[delivery("d2", "w1")])
            .await
            .expect("enqueue");
        assert_eq!(webhooks.claim("b", 1, LONG).await.expect("claim").len(), 1);
        let state = webhooks
            .attempt_failed("d2", "b", None, "timed out", LONG, Duration::from_secs(1))
            .await
            .expect("failed");
        assert_eq!(state, Some(DeliveryState::Failed), "{backend}");
        assert_eq!(
            webhooks
                .attempt_failed("d2", "b", None, "again", LONG, DAY)
                .await
                .expect("again"),
            None,
            "a finished row takes no more attempts ({backend})"
        );

        // Giving up at once (the webhook went away meanwhile).
        webhooks
            .enqueue(&[delivery("d3", "w1")])
            .await
            .expect("enqueue");
        assert_eq!(webhooks.claim("c", 1, LONG).await.expect("claim").len(), 1);
        assert!(webhooks.give_up("d3", "c", "gone").await.expect("give up"));
        let row = &webhooks.deliveries("w1", 1, None).await.expect("log")[0];
        assert_eq!(row.id, "d3");
        assert_eq!(row.state, DeliveryState::Failed, "{backend}");
        assert_eq!(row.attempts, 0, "{backend}");
    }
}

#[tokio::test]
async fn the_log_pages_newest_first() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let webhooks = Webhooks::new(database);
        webhooks
            .create(&webhook("w1", &["x"]), 20)
            .await
            .expect("w1");
        webhooks
            .create(&webhook("w2", &["x"]), 20)
            .await
            .expect("w2");
        for n in 0..5 {
            webhooks
                .enqueue(&[
                    delivery(&format!("d{n}"), "w1"),
                    delivery(&format!("o{n}"), "w2"),
                ])
                .await
                .expect("enqueue");
        }
        let ids = |page: Vec<lectern_db::webhooks::Delivery>| {
            page.into_iter().map(|row| row.id).collect::<Vec<_>>()
        };
        let first = ids(webhooks.deliveries("w1", 2, None).await.expect("page 1"));
        assert_eq!(first, ["d4", "d3"], "{backend}");
        let second = ids(webhooks
            .deliveries("w1", 2, Some("d3"))
            .await
            .expect("page 2"));
        assert_eq!(second, ["d2", "d1"], "{backend}");
        let last = ids(webhooks
            .deliveries("w1", 2, Some("d1"))
            .await
            .expect("page 3"));
        assert_eq!(last, ["d0"], "{backend}");
        assert!(
            webhooks
                .deliveries("w1", 2, Some("unknown"))
                .await
                .expect("unknown cursor")
                .is_empty(),
            "{backend}"
        );
    }
}
