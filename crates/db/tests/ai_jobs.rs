//! AI job records against real databases: a SQLite file and the real PostgreSQL. Every
//! test runs the same assertions on both backends.

use lectern_db::accounts::{Role, User};
use lectern_db::ai_jobs::{AiJobRecord, JobStatus, JobUsage};
use lectern_db::classrooms::Classroom;
use lectern_db::sessions::NewSession;
use lectern_db::{Accounts, AiJobs, Classrooms, Database, Sessions};

use crate::backends;

/// A teacher, classroom `c1` and its session `s1`.
async fn session(database: &Database) {
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
    Sessions::new(database.clone())
        .start(&NewSession {
            id: "s1".into(),
            classroom_id: "c1".into(),
            started_by: "teacher".into(),
            started_at: 20,
        })
        .await
        .expect("session");
}

fn job(id: &str, node: &str, heartbeat_at_ms: i64) -> AiJobRecord {
    AiJobRecord {
        id: id.into(),
        kind: "qa".into(),
        session_id: "s1".into(),
        classroom_id: "c1".into(),
        doc_id: "session/s1/chat".into(),
        status: JobStatus::Queued,
        error: None,
        cached: false,
        prompt_tokens: 0,
        completion_tokens: 0,
        started_by: "teacher".into(),
        created_at: 100,
        finished_at: None,
        node: node.into(),
        heartbeat_at_ms,
        cancel_requested: false,
    }
}

#[tokio::test]
async fn a_job_moves_through_its_statuses_and_its_first_end_wins() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        session(&database).await;
        let jobs = AiJobs::new(database);
        let new = job("j1", "node-a", 1_000);
        jobs.insert(&new).await.expect("insert");
        assert_eq!(
            jobs.get("j1").await.expect("get"),
            Some(new.clone()),
            "{backend}"
        );
        assert_eq!(jobs.get("nope").await.expect("get"), None);

        assert!(
            jobs.set_status("j1", JobStatus::Streaming)
                .await
                .expect("status")
        );
        let usage = JobUsage {
            prompt_tokens: 20,
            completion_tokens: 5,
            cached: true,
        };
        assert!(
            jobs.finish("j1", JobStatus::Done, None, usage, 130)
                .await
                .expect("finish")
        );
        // Ended is ended: later updates change nothing.
        assert!(
            !jobs
                .set_status("j1", JobStatus::Streaming)
                .await
                .expect("status")
        );
        assert!(
            !jobs
                .finish(
                    "j1",
                    JobStatus::Failed,
                    Some("late"),
                    JobUsage::default(),
                    140
                )
                .await
                .expect("finish")
        );
        assert!(!jobs.request_cancel("j1").await.expect("cancel"));
        let done = jobs.get("j1").await.expect("get").expect("j1");
        assert_eq!(
            done,
            AiJobRecord {
                status: JobStatus::Done,
                cached: true,
                prompt_tokens: 20,
                completion_tokens: 5,
                finished_at: Some(130),
                ..new
            },
            "{backend}"
        );
    }
}

#[tokio::test]
async fn one_heartbeat_covers_a_nodes_jobs_and_brings_back_cancel_requests() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        session(&database).await;
        let jobs = AiJobs::new(database);
        for id in ["a1", "a2", "a3"] {
            jobs.insert(&job(id, "node-a", 1_000))
                .await
                .expect("insert");
        }
        jobs.insert(&job("b1", "node-b", 1_000))
            .await
            .expect("insert");
        // Asked through any node; the running node learns it on its next beat.
        assert!(jobs.request_cancel("a2").await.expect("cancel"));
        assert!(jobs.request_cancel("b1").await.expect("cancel"));
        jobs.finish("a3", JobStatus::Done, None, JobUsage::default(), 110)
            .await
            .expect("finish");

        let local = ["a1".to_owned(), "a2".to_owned(), "a3".to_owned()];
        let cancel = jobs.heartbeat(&local, 5_000).await.expect("heartbeat");
        assert_eq!(cancel, ["a2"], "{backend}");
        assert_eq!(
            jobs.heartbeat(&[], 5_000).await.expect("empty"),
            Vec::<String>::new()
        );
        let beat = |id: &'static str| {
            let jobs = jobs.clone();
            async move {
                jobs.get(id)
                    .await
                    .expect("get")
                    .expect("job")
                    .heartbeat_at_ms
            }
        };
        assert_eq!(beat("a1").await, 5_000, "{backend}");
        assert_eq!(beat("a2").await, 5_000, "{backend}");
        assert_eq!(
            beat("a3").await,
            1_000,
            "ended jobs are left alone ({backend})"
        );
        assert_eq!(beat("b1").await, 1_000, "other nodes' jobs too ({backend})");
    }
}

#[tokio::test]
async fn a_job_whose_node_fell_silent_is_failed_once_and_old_jobs_are_pruned() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        session(&database).await;
        let jobs = AiJobs::new(database);
        jobs.insert(&job("live", "node-a", 10_000))
            .await
            .expect("insert");
        jobs.insert(&job("lost", "node-b", 1_000))
            .await
            .expect("insert");

        let error = "interrupted: the server running it stopped";
        assert_eq!(
            jobs.interrupt_if_stale("live", 5_000, error, 200)
                .await
                .expect("live"),
            None,
            "a recent heartbeat keeps it running ({backend})"
        );
        let failed = jobs
            .interrupt_if_stale("lost", 5_000, error, 200)
            .await
            .expect("lost")
            .expect("failed now");
        assert_eq!(failed.status, JobStatus::Failed, "{backend}");
        assert_eq!(failed.error.as_deref(), Some(error));
        assert_eq!(failed.finished_at, Some(200));
        assert_eq!(
            jobs.interrupt_if_stale("lost", 5_000, error, 300)
                .await
                .expect("again"),
            None,
            "already ended ({backend})"
        );

        jobs.insert(&job("silent", "node-c", 2_000))
            .await
            .expect("insert");
        // Ended before 250 s, or silent since before 3 s: gone; the rest stays.
        assert_eq!(jobs.prune(250, 3_000).await.expect("prune"), 2, "{backend}");
        assert!(jobs.get("lost").await.expect("get").is_none());
        assert!(jobs.get("silent").await.expect("get").is_none());
        assert!(jobs.get("live").await.expect("get").is_some());
    }
}
