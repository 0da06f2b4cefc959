//! Live sessions and the document registry against real databases: a SQLite file and the
//! real PostgreSQL. Every test runs the same assertions on both backends.

use lectern_db::accounts::{Role, User};
use lectern_db::classrooms::{Classroom, MemberRole};
use lectern_db::sessions::{
    DocKind, Handout, NewSession, SessionState, SessionUpdate, session_doc_id,
};
use lectern_db::{Accounts, Classrooms, Database, DbError, Sessions};

use crate::backends;

/// A classroom `c1` taught by `teacher` with students `alice` and `bob`, plus `carol`, who
/// has an account but is not enrolled.
async fn classroom(database: &Database) {
    let accounts = Accounts::new(database.clone());
    for (id, role) in [
        ("teacher", Role::Faculty),
        ("alice", Role::Student),
        ("bob", Role::Student),
        ("carol", Role::Student),
    ] {
        accounts
            .create_user(&User {
                id: id.into(),
                email: format!("{id}@example.edu"),
                display_name: id.into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                role,
                created_at: 1,
            })
            .await
            .expect("user");
    }
    let classrooms = Classrooms::new(database.clone());
    classrooms
        .create(&Classroom {
            id: "c1".into(),
            name: "Class".into(),
            join_code: "ABCDEFGH".into(),
            created_by: "teacher".into(),
            created_at: 10,
        })
        .await
        .expect("classroom");
    for student in ["alice", "bob"] {
        classrooms
            .add_member("c1", student, MemberRole::Student, 11)
            .await
            .expect("enrol");
    }
}

fn new_session(id: &str, started_at: i64) -> NewSession {
    NewSession {
        id: id.into(),
        classroom_id: "c1".into(),
        started_by: "teacher".into(),
        started_at,
    }
}

#[tokio::test]
async fn a_classroom_runs_one_session_at_a_time_with_its_four_documents() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let sessions = Sessions::new(database);

        let (session, documents) = sessions
            .start(&new_session("s1", 100))
            .await
            .expect("start");
        assert_eq!(session.state, SessionState::Live, "{backend}");
        assert_eq!(session.ended_at, None);
        let ids: Vec<&str> = documents.iter().map(|d| d.doc_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "session/s1/notes",
                "session/s1/mindmap",
                "session/s1/chat",
                "session/s1/lectern"
            ],
            "{backend}"
        );
        assert_eq!(
            sessions.documents_of_session("s1").await.expect("docs"),
            documents,
            "{backend}: stored as returned, in the same order"
        );
        assert_eq!(
            sessions.get("s1").await.expect("get"),
            Some(session.clone())
        );
        assert_eq!(
            sessions.current("c1").await.expect("current"),
            Some(session)
        );

        let error = sessions
            .start(&new_session("s2", 101))
            .await
            .expect_err("second session");
        assert!(
            matches!(error, DbError::SessionAlreadyRunning),
            "{backend} {error:?}"
        );
        assert_eq!(
            sessions.documents_of_session("s2").await.expect("docs"),
            [],
            "{backend}: the refused start left no documents behind"
        );

        // Locked still counts as running.
        sessions
            .set_state("s1", SessionState::Locked, 102)
            .await
            .expect("lock");
        assert!(matches!(
            sessions.start(&new_session("s2", 103)).await,
            Err(DbError::SessionAlreadyRunning)
        ));

        // Once it ended, the next one may start.
        sessions
            .set_state("s1", SessionState::Ended, 104)
            .await
            .expect("end");
        assert_eq!(sessions.current("c1").await.expect("current"), None);
        let (next, _) = sessions
            .start(&new_session("s2", 105))
            .await
            .expect("start");
        assert_eq!(
            sessions.current("c1").await.expect("current"),
            Some(next),
            "{backend}"
        );
        assert_eq!(sessions.get("nope").await.expect("get"), None);
    }
}

#[tokio::test]
async fn a_classrooms_sessions_are_listed_newest_first_within_the_limit() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let sessions = Sessions::new(database.clone());
        assert_eq!(
            sessions.recent("c1", 10).await.expect("recent"),
            [],
            "{backend}"
        );
        // The running one ("s0") started in the same second as the last ended one, and its
        // id sorts first: it is still listed first.
        for (id, started_at) in [("s1", 100), ("s2", 200), ("s0", 200)] {
            sessions
                .start(&new_session(id, started_at))
                .await
                .expect("start");
            if id != "s0" {
                sessions
                    .set_state(id, SessionState::Ended, started_at + 50)
                    .await
                    .expect("end");
            }
        }
        let ids = |list: Vec<lectern_db::sessions::Session>| {
            list.into_iter()
                .map(|session| session.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(sessions.recent("c1", 10).await.expect("recent")),
            ["s0", "s2", "s1"],
            "{backend}: the running one first, then the ended ones, newest first"
        );
        assert_eq!(
            ids(sessions.recent("c1", 2).await.expect("recent")),
            ["s0", "s2"],
            "{backend}: at most the limit"
        );
        assert_eq!(
            sessions.recent("other", 10).await.expect("recent"),
            [],
            "{backend}: another classroom's sessions are not listed"
        );
    }
}

#[tokio::test]
async fn sessions_lock_unlock_and_end_for_good() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let sessions = Sessions::new(database);
        sessions
            .start(&new_session("s1", 100))
            .await
            .expect("start");

        let state = |update: SessionUpdate| match update {
            SessionUpdate::Updated(session) => Some((session.state, session.ended_at)),
            SessionUpdate::Ended | SessionUpdate::NotFound => None,
        };
        for (target, expected) in [
            (SessionState::Locked, SessionState::Locked),
            (SessionState::Locked, SessionState::Locked), // idempotent
            (SessionState::Live, SessionState::Live),
        ] {
            let update = sessions.set_state("s1", target, 101).await.expect("set");
            assert_eq!(state(update), Some((expected, None)), "{backend}");
        }

        let focus = r#"{"doc_id":"session/s1/notes","section":"intro"}"#;
        let update = sessions.set_focus("s1", focus).await.expect("focus");
        let SessionUpdate::Updated(session) = update else {
            panic!("{backend}: focus not stored: {update:?}");
        };
        assert_eq!(session.focus.as_deref(), Some(focus));

        let update = sessions
            .set_state("s1", SessionState::Ended, 150)
            .await
            .expect("end");
        assert_eq!(
            state(update),
            Some((SessionState::Ended, Some(150))),
            "{backend}"
        );
        // Ended is final, for the state and the focus alike; the focus is kept.
        for target in [
            SessionState::Live,
            SessionState::Locked,
            SessionState::Ended,
        ] {
            assert_eq!(
                sessions.set_state("s1", target, 160).await.expect("set"),
                SessionUpdate::Ended,
                "{backend} {target:?}"
            );
        }
        assert_eq!(
            sessions.set_focus("s1", "{}").await.expect("focus"),
            SessionUpdate::Ended
        );
        let stored = sessions.get("s1").await.expect("get").expect("session");
        assert_eq!(stored.ended_at, Some(150), "{backend}");
        assert_eq!(stored.focus.as_deref(), Some(focus));

        assert_eq!(
            sessions
                .set_state("nope", SessionState::Locked, 1)
                .await
                .expect("set"),
            SessionUpdate::NotFound
        );
        assert_eq!(
            sessions.set_focus("nope", "{}").await.expect("focus"),
            SessionUpdate::NotFound
        );
    }
}

#[tokio::test]
async fn documents_are_looked_up_with_their_session_state() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let sessions = Sessions::new(database);
        sessions
            .start(&new_session("s1", 100))
            .await
            .expect("start");
        sessions
            .set_state("s1", SessionState::Locked, 101)
            .await
            .expect("lock");

        let notes = session_doc_id("s1", DocKind::Notes);
        let entry = sessions
            .document(&notes)
            .await
            .expect("lookup")
            .expect("registered");
        assert_eq!(entry.document.kind, DocKind::Notes, "{backend}");
        assert_eq!(entry.document.classroom_id, "c1");
        assert_eq!(entry.document.session_id.as_deref(), Some("s1"));
        assert_eq!(entry.session_state, Some(SessionState::Locked));

        let template = sessions
            .create_template("template/c1/t1", "c1", 102)
            .await
            .expect("template");
        let entry = sessions
            .document("template/c1/t1")
            .await
            .expect("lookup")
            .expect("registered");
        assert_eq!(entry.document, template, "{backend}");
        assert_eq!(entry.session_state, None, "templates belong to no session");

        assert_eq!(
            sessions.document("elsewhere/doc").await.expect("lookup"),
            None
        );
        let mut expected = vec![
            "session/s1/chat".to_owned(),
            "session/s1/lectern".to_owned(),
            "session/s1/mindmap".to_owned(),
            notes,
            "template/c1/t1".to_owned(),
        ];
        expected.sort();
        assert_eq!(
            sessions.doc_ids_of_classroom("c1").await.expect("ids"),
            expected,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn handouts_fork_once_per_student_and_only_while_running() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        classroom(&database).await;
        let sessions = Sessions::new(database.clone());
        sessions
            .start(&new_session("s1", 100))
            .await
            .expect("start");
        sessions
            .create_template("template/c1/t1", "c1", 100)
            .await
            .expect("template");

        let Handout::Forks { forks, created } = sessions
            .create_forks("s1", "template/c1/t1", "h1", 110)
            .await
            .expect("handout")
        else {
            panic!("{backend}: no forks");
        };
        let owners: Vec<Option<&str>> = forks.iter().map(|f| f.owner_user_id.as_deref()).collect();
        assert_eq!(
            owners,
            [Some("alice"), Some("bob")],
            "{backend}: one fork per student, none for faculty or non-members"
        );
        assert_eq!(created, ["fork/s1/h1/alice", "fork/s1/h1/bob"], "{backend}");
        for fork in &forks {
            assert_eq!(fork.kind, DocKind::Fork);
            assert_eq!(fork.session_id.as_deref(), Some("s1"));
            assert_eq!(fork.classroom_id, "c1");
            assert_eq!(fork.template_doc_id.as_deref(), Some("template/c1/t1"));
        }

        // Again, after carol enrolled: only her fork is new, under the same prefix.
        Classrooms::new(database.clone())
            .add_member("c1", "carol", MemberRole::Student, 120)
            .await
            .expect("enrol");
        let Handout::Forks { forks, created } = sessions
            .create_forks("s1", "template/c1/t1", "h2", 121)
            .await
            .expect("handout")
        else {
            panic!("{backend}: no forks");
        };
        assert_eq!(forks.len(), 3, "{backend}");
        assert_eq!(created, ["fork/s1/h1/carol"], "{backend}");
        let Handout::Forks { created, .. } = sessions
            .create_forks("s1", "template/c1/t1", "h3", 122)
            .await
            .expect("handout")
        else {
            panic!("{backend}: no forks");
        };
        assert!(created.is_empty(), "{backend}: idempotent");

        // Another template is another handout.
        sessions
            .create_template("template/c1/t2", "c1", 123)
            .await
            .expect("template");
        let Handout::Forks { created, .. } = sessions
            .create_forks("s1", "template/c1/t2", "h4", 124)
            .await
            .expect("handout")
        else {
            panic!("{backend}: no forks");
        };
        assert_eq!(created.len(), 3, "{backend}");
        assert!(created.iter().all(|id| id.starts_with("fork/s1/h4/")));

        let entry = sessions
            .document("fork/s1/h1/alice")
            .await
            .expect("lookup")
            .expect("registered");
        assert_eq!(entry.document.owner_user_id.as_deref(), Some("alice"));
        assert_eq!(entry.session_state, Some(SessionState::Live), "{backend}");
        assert_eq!(
            sessions
                .documents_of_session("s1")
                .await
                .expect("docs")
                .len(),
            4 + 3 + 3,
            "{backend}"
        );

        sessions
            .set_state("s1", SessionState::Ended, 130)
            .await
            .expect("end");
        assert_eq!(
            sessions
                .create_forks("s1", "template/c1/t1", "h5", 131)
                .await
                .expect("handout"),
            Handout::Ended
        );
        assert_eq!(
            sessions
                .create_forks("nope", "template/c1/t1", "h6", 131)
                .await
                .expect("handout"),
            Handout::NotFound
        );
        let entry = sessions
            .document("fork/s1/h1/alice")
            .await
            .expect("lookup")
            .expect("registered");
        assert_eq!(entry.session_state, Some(SessionState::Ended), "{backend}");
    }
}
