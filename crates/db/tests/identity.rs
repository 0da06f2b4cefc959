//! Accounts, refresh-token rotation and classrooms against real databases: a SQLite file and
//! the real PostgreSQL (a fresh database per test; under `CI=true` an unreachable
//! PostgreSQL fails the test). Every test runs the same assertions on both backends.

use lectern_db::accounts::{NewRefreshToken, Role, Rotation, User};
use lectern_db::classrooms::{Classroom, MemberRole, Removal};
use lectern_db::{Accounts, Classrooms, DbError};

use crate::backends;

fn user(id: &str, email: &str, role: Role) -> User {
    User {
        id: id.into(),
        email: email.into(),
        display_name: format!("User {id}"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role,
        created_at: 1_700_000_000,
    }
}

fn classroom(id: &str, code: &str, created_by: &str, created_at: i64) -> Classroom {
    Classroom {
        id: id.into(),
        name: format!("Class {id}"),
        join_code: code.into(),
        created_by: created_by.into(),
        created_at,
    }
}

#[tokio::test]
async fn users_are_found_by_email_and_id_and_emails_are_unique() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let accounts = Accounts::new(database.clone());
        let ada = user("u1", "ada@example.edu", Role::Faculty);
        accounts.create_user(&ada).await.expect("create");
        assert_eq!(
            accounts
                .user_by_email("ada@example.edu")
                .await
                .expect("by email"),
            Some(ada.clone()),
            "{}",
            database.backend()
        );
        assert_eq!(accounts.user_by_id("u1").await.expect("by id"), Some(ada));
        assert_eq!(accounts.user_by_id("nobody").await.expect("by id"), None);
        let error = accounts
            .create_user(&user("u2", "ada@example.edu", Role::Student))
            .await
            .expect_err("duplicate email");
        assert!(matches!(error, DbError::EmailTaken), "{error:?}");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let accounts = Accounts::new(database);
        accounts
            .create_user(&user("u1", "bo@example.edu", Role::Student))
            .await
            .expect("create");
        let now = 1_000;
        accounts
            .insert_refresh_token(&NewRefreshToken {
                token_hash: vec![1; 32],
                family_id: "fam".into(),
                user_id: "u1".into(),
                created_at: now,
                expires_at: now + 100,
            })
            .await
            .expect("insert");

        let rotated = accounts
            .rotate_refresh_token(&[1; 32], &[2; 32], now + 200, now + 1)
            .await
            .expect("rotate");
        assert_eq!(
            rotated,
            Rotation::Rotated {
                user_id: "u1".into(),
                family_id: "fam".into()
            },
            "{backend}"
        );
        // The successor works once too.
        let rotated = accounts
            .rotate_refresh_token(&[2; 32], &[3; 32], now + 300, now + 2)
            .await
            .expect("rotate");
        assert!(matches!(rotated, Rotation::Rotated { .. }), "{backend}");

        // Replaying the first token is reuse: the family, including the live [3; 32], dies.
        let replayed = accounts
            .rotate_refresh_token(&[1; 32], &[4; 32], now + 300, now + 3)
            .await
            .expect("replay");
        assert!(
            matches!(replayed, Rotation::Reused { .. }),
            "{backend}: {replayed:?}"
        );
        let live = accounts
            .rotate_refresh_token(&[3; 32], &[5; 32], now + 300, now + 4)
            .await
            .expect("after revocation");
        assert_eq!(live, Rotation::Revoked, "{backend}");

        let unknown = accounts
            .rotate_refresh_token(&[9; 32], &[6; 32], now + 300, now + 5)
            .await
            .expect("unknown");
        assert_eq!(unknown, Rotation::Unknown, "{backend}");
    }
}

#[tokio::test]
async fn expired_refresh_tokens_do_not_rotate_and_logout_revokes_the_family() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let accounts = Accounts::new(database);
        accounts
            .create_user(&user("u1", "cy@example.edu", Role::Student))
            .await
            .expect("create");
        for (hash, family) in [([1; 32], "old"), ([2; 32], "current")] {
            accounts
                .insert_refresh_token(&NewRefreshToken {
                    token_hash: hash.to_vec(),
                    family_id: family.into(),
                    user_id: "u1".into(),
                    created_at: 0,
                    expires_at: 100,
                })
                .await
                .expect("insert");
        }
        let expired = accounts
            .rotate_refresh_token(&[1; 32], &[3; 32], 500, 100)
            .await
            .expect("expired");
        assert_eq!(expired, Rotation::Expired, "{backend}");

        let revoked = accounts.revoke_family(&[2; 32], 50).await.expect("logout");
        assert!(revoked.is_some(), "{backend}");
        assert!(
            accounts
                .family_revoked(&revoked.unwrap_or_default())
                .await
                .expect("lookup"),
            "{backend}"
        );
        assert!(
            !accounts
                .family_revoked("no-such-family")
                .await
                .expect("lookup")
        );
        assert_eq!(
            accounts.revoke_family(&[7; 32], 50).await.expect("unknown"),
            None
        );
        let revoked = accounts
            .rotate_refresh_token(&[2; 32], &[4; 32], 500, 60)
            .await
            .expect("after logout");
        assert_eq!(revoked, Rotation::Revoked, "{backend}");
    }
}

#[tokio::test]
async fn classrooms_enrol_by_join_code_which_rotates() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let accounts = Accounts::new(database.clone());
        let classrooms = Classrooms::new(database);
        for (id, email, role) in [
            ("teacher", "t@example.edu", Role::Faculty),
            ("alice", "a@example.edu", Role::Student),
        ] {
            accounts
                .create_user(&user(id, email, role))
                .await
                .expect("user");
        }
        classrooms
            .create(&classroom("c1", "ABCD2345", "teacher", 10))
            .await
            .expect("create");
        let error = classrooms
            .create(&classroom("c2", "ABCD2345", "teacher", 11))
            .await
            .expect_err("duplicate code");
        assert!(matches!(error, DbError::JoinCodeTaken), "{error:?}");
        assert_eq!(
            classrooms.membership("c1", "teacher").await.expect("m"),
            Some(MemberRole::Faculty),
            "the creator teaches the class ({backend})"
        );

        let found = classrooms
            .by_join_code("ABCD2345")
            .await
            .expect("by code")
            .expect("found");
        assert_eq!(found.id, "c1");
        let role = classrooms
            .add_member("c1", "alice", MemberRole::Student, 20)
            .await
            .expect("enrol");
        assert_eq!(role, MemberRole::Student);
        // Enrolling twice, or faculty using the code, changes nothing.
        let again = classrooms
            .add_member("c1", "teacher", MemberRole::Student, 21)
            .await
            .expect("enrol again");
        assert_eq!(again, MemberRole::Faculty, "{backend}");

        assert!(
            classrooms
                .set_join_code("c1", "WXYZ6789")
                .await
                .expect("rotate")
        );
        assert_eq!(
            classrooms.by_join_code("ABCD2345").await.expect("old"),
            None
        );
        assert!(
            classrooms
                .by_join_code("WXYZ6789")
                .await
                .expect("new")
                .is_some()
        );
        assert!(
            !classrooms
                .set_join_code("missing", "QQQQ2222")
                .await
                .expect("missing")
        );

        let members = classrooms.members("c1").await.expect("members");
        let listed: Vec<_> = members
            .iter()
            .map(|member| (member.user_id.as_str(), member.role))
            .collect();
        assert_eq!(
            listed,
            [
                ("teacher", MemberRole::Faculty),
                ("alice", MemberRole::Student)
            ],
            "{backend}"
        );
        let mine = classrooms.for_user("alice").await.expect("mine");
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].classroom.join_code, "WXYZ6789");
        assert_eq!(mine[0].role, MemberRole::Student);
    }
}

#[tokio::test]
async fn members_leave_but_the_last_faculty_stays() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        let accounts = Accounts::new(database.clone());
        let classrooms = Classrooms::new(database);
        for (id, email, role) in [
            ("teacher", "t@example.edu", Role::Faculty),
            ("bob", "b@example.edu", Role::Student),
        ] {
            accounts
                .create_user(&user(id, email, role))
                .await
                .expect("user");
        }
        classrooms
            .create(&classroom("c1", "JKLM3456", "teacher", 10))
            .await
            .expect("create");
        classrooms
            .add_member("c1", "bob", MemberRole::Student, 20)
            .await
            .expect("enrol");
        assert_eq!(
            classrooms.remove_member("c1", "teacher").await.expect("rm"),
            Removal::LastFaculty,
            "{backend}"
        );
        assert_eq!(
            classrooms.remove_member("c1", "bob").await.expect("rm"),
            Removal::Removed
        );
        assert_eq!(
            classrooms.remove_member("c1", "bob").await.expect("rm"),
            Removal::NotMember
        );
        assert_eq!(classrooms.membership("c1", "bob").await.expect("m"), None);
        assert!(classrooms.for_user("bob").await.expect("mine").is_empty());
    }
}
