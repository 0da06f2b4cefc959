//! Notification settings against real databases: a SQLite file and the real PostgreSQL.
//! Every test runs the same assertions on both backends.

use lectern_db::accounts::{Role, User};
use lectern_db::classrooms::{Classroom, MemberRole};
use lectern_db::notifications::Settings;
use lectern_db::{Accounts, Classrooms, Database, Notifications};

use crate::backends;

async fn user(database: &Database, id: &str, role: Role) {
    Accounts::new(database.clone())
        .create_user(&User {
            id: id.into(),
            email: format!("{id}@example.edu"),
            display_name: id.to_uppercase(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            role,
            created_at: 1,
        })
        .await
        .expect("user");
}

#[tokio::test]
async fn email_is_on_by_default_and_opted_out_students_are_not_recipients() {
    let (databases, _dir) = backends().await;
    for database in databases {
        let backend = database.backend();
        user(&database, "teacher", Role::Faculty).await;
        for student in ["ann", "ben", "cat"] {
            user(&database, student, Role::Student).await;
        }
        user(&database, "outsider", Role::Student).await;
        let classrooms = Classrooms::new(database.clone());
        classrooms
            .create(&Classroom {
                id: "c1".into(),
                name: "Class".into(),
                join_code: "CODE1".into(),
                created_by: "teacher".into(),
                created_at: 10,
            })
            .await
            .expect("classroom");
        for (at, student) in [(20, "ann"), (21, "ben"), (22, "cat")] {
            classrooms
                .add_member("c1", student, MemberRole::Student, at)
                .await
                .expect("join");
        }

        let notifications = Notifications::new(database.clone());
        assert_eq!(
            notifications.settings("ann").await.expect("settings"),
            Settings { email: true },
            "{backend}: never chose"
        );
        notifications
            .set_settings("ben", Settings { email: false })
            .await
            .expect("opt out");
        notifications
            .set_settings("cat", Settings { email: false })
            .await
            .expect("opt out");
        notifications
            .set_settings("cat", Settings { email: true })
            .await
            .expect("opt back in (an upsert)");
        assert_eq!(
            notifications.settings("ben").await.expect("settings"),
            Settings { email: false },
            "{backend}"
        );

        let recipients: Vec<(String, String, String)> = notifications
            .student_email_recipients("c1")
            .await
            .expect("recipients")
            .into_iter()
            .map(|r| (r.user_id, r.email, r.display_name))
            .collect();
        assert_eq!(
            recipients,
            vec![
                ("ann".into(), "ann@example.edu".into(), "ANN".into()),
                ("cat".into(), "cat@example.edu".into(), "CAT".into()),
            ],
            "{backend}: students only (not faculty, not outsiders), opted-out ben left out"
        );
    }
}
