//! Course material and its chunks against real databases: a SQLite file and the real
//! PostgreSQL. Every test runs the same assertions on both backends.

use lectern_db::accounts::{Role, User};
use lectern_db::classrooms::Classroom;
use lectern_db::materials::{Material, MaterialChunk, MaterialFormat, MaterialStatus};
use lectern_db::{Accounts, Classrooms, Database, Materials};

use crate::backends;

async fn classroom(database: &Database, id: &str) {
    let accounts = Accounts::new(database.clone());
    if accounts
        .user_by_id("teacher")
        .await
        .expect("lookup")
        .is_none()
    {
        accounts
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
    }
    Classrooms::new(database.clone())
        .create(&Classroom {
            id: id.into(),
            name: "Class".into(),
            join_code: format!("CODE{id}"),
            created_by: "teacher".into(),
            created_at: 10,
        })
        .await
        .expect("classroom");
}

fn material(id: &str, classroom_id: &str, created_at: i64) -> Material {
    Material {
        id: id.into(),
        classroom_id: classroom_id.into(),
        uploaded_by: "teacher".into(),
        file_name: format!("{id}.pdf"),
        format: MaterialFormat::Pdf,
        size_bytes: 1234,
        object_key: format!("materials/{id}"),
        status: MaterialStatus::Queued,
        progress: 0,
        error: None,
        sections: None,
        chunk_count: 0,
        created_at,
        updated_at: created_at,
    }
}

fn chunk(material_id: &str, ordinal: i32, text: &str) -> MaterialChunk {
    MaterialChunk {
        material_id: material_id.into(),
        ordinal,
        page: Some(ordinal + 1),
        heading: (ordinal == 0).then(|| "Intro".to_owned()),
        text: text.into(),
        line_start: Some(ordinal * 10 + 1),
        line_end: Some(ordinal * 10 + 9),
        overlap_chars: Some(ordinal),
    }
}

#[tokio::test]
async fn a_material_moves_through_ingestion_and_its_chunks_land_atomically() {
    let (databases, _dir) = backends().await;
    for database in databases {
        classroom(&database, "c1").await;
        let materials = Materials::new(database.clone());
        materials
            .create(&material("m1", "c1", 100))
            .await
            .expect("create");
        assert_eq!(
            materials.unfinished().await.expect("unfinished").len(),
            1,
            "{}",
            database.backend()
        );

        assert!(
            materials
                .set_status("m1", MaterialStatus::Extracting, 0, None, None, 101)
                .await
                .expect("status")
        );
        assert!(
            materials
                .set_status("m1", MaterialStatus::Embedding, 50, None, Some(2), 102)
                .await
                .expect("status")
        );
        let chunks = vec![
            (chunk("m1", 0, "first"), vec![1.0, 0.0]),
            (chunk("m1", 1, "second"), vec![0.0, 1.0]),
        ];
        assert!(materials.finish("m1", &chunks, 103).await.expect("finish"));

        let stored = materials.get("m1").await.expect("get").expect("exists");
        assert_eq!(stored.status, MaterialStatus::Ready);
        assert_eq!(stored.sections, Some(2), "kept from the embedding step");
        assert_eq!(stored.chunk_count, 2);
        assert_eq!(stored.updated_at, 103);
        assert!(materials.unfinished().await.expect("unfinished").is_empty());

        let texts: Vec<_> = materials
            .chunks("m1")
            .await
            .expect("chunks")
            .into_iter()
            .map(|chunk| (chunk.ordinal, chunk.page, chunk.heading, chunk.text))
            .collect();
        assert_eq!(
            texts,
            vec![
                (0, Some(1), Some("Intro".to_owned()), "first".to_owned()),
                (1, Some(2), None, "second".to_owned())
            ]
        );
        // Every field round-trips, line range and overlap included.
        let whole: Vec<MaterialChunk> = chunks.iter().map(|(chunk, _)| chunk.clone()).collect();
        assert_eq!(materials.chunks("m1").await.expect("chunks"), whole);
        assert_eq!(
            materials.chunk("m1", 1).await.expect("chunk").as_ref(),
            Some(&whole[1])
        );
        let embeddings = materials.classroom_embeddings("c1").await.expect("vectors");
        assert_eq!(embeddings.len(), 2);
        assert_eq!(embeddings[1].vector, vec![0.0, 1.0]);

        // Ingesting again replaces the chunks rather than adding to them.
        let again = vec![(chunk("m1", 0, "only"), vec![0.5, 0.5])];
        assert!(materials.finish("m1", &again, 104).await.expect("finish"));
        assert_eq!(materials.chunks("m1").await.expect("chunks").len(), 1);
        assert_eq!(
            materials
                .chunk("m1", 0)
                .await
                .expect("chunk")
                .expect("exists")
                .text,
            "only"
        );
    }
}

#[tokio::test]
async fn a_failed_material_keeps_its_reason_and_is_not_searched() {
    let (databases, _dir) = backends().await;
    for database in databases {
        classroom(&database, "c1").await;
        let materials = Materials::new(database.clone());
        materials
            .create(&material("m1", "c1", 100))
            .await
            .expect("create");
        materials
            .set_status(
                "m1",
                MaterialStatus::Failed,
                0,
                Some("the PDF is password-protected"),
                None,
                101,
            )
            .await
            .expect("status");
        let stored = materials.get("m1").await.expect("get").expect("exists");
        assert_eq!(stored.status, MaterialStatus::Failed);
        assert_eq!(
            stored.error.as_deref(),
            Some("the PDF is password-protected")
        );
        assert!(
            materials
                .classroom_embeddings("c1")
                .await
                .expect("vectors")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn deleting_a_material_removes_its_chunks_and_returns_its_object_key() {
    let (databases, _dir) = backends().await;
    for database in databases {
        classroom(&database, "c1").await;
        classroom(&database, "c2").await;
        let materials = Materials::new(database.clone());
        materials
            .create(&material("m1", "c1", 100))
            .await
            .expect("create");
        materials
            .create(&material("m2", "c1", 101))
            .await
            .expect("create");
        materials
            .create(&material("m3", "c2", 102))
            .await
            .expect("create");
        materials
            .finish("m1", &[(chunk("m1", 0, "x"), vec![1.0])], 103)
            .await
            .expect("finish");

        let listed: Vec<_> = materials
            .list_for_classroom("c1")
            .await
            .expect("list")
            .into_iter()
            .map(|material| material.id)
            .collect();
        assert_eq!(listed, vec!["m1", "m2"]);

        let deleted = materials
            .delete("m1")
            .await
            .expect("delete")
            .expect("existed");
        assert_eq!(deleted.object_key, "materials/m1");
        assert!(materials.delete("m1").await.expect("delete").is_none());
        assert!(materials.chunks("m1").await.expect("chunks").is_empty());
        assert!(
            !materials
                .set_status("m1", MaterialStatus::Embedding, 0, None, None, 104)
                .await
                .expect("status"),
            "a deleted material's ingestion learns it is gone"
        );
        assert!(
            !materials
                .finish("m1", &[(chunk("m1", 0, "late"), vec![1.0])], 105)
                .await
                .expect("finish")
        );
        assert!(materials.chunks("m1").await.expect("chunks").is_empty());
    }
}

/// The database at `url` as a version before chunk locations left it: only the migrations
/// before 0007 applied. Returned as a [`Database`] without further migrations.
async fn migrated_before_locations(url: &str) -> Database {
    let backend_dir = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    // The older migration files, unchanged (sqlx compares their checksums later).
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend_dir);
    let older = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&path, older.path().join(&name)).expect("copy");
        }
    }
    let migrator = sqlx::migrate::Migrator::new(older.path())
        .await
        .expect("older migrations");
    if backend_dir == "sqlite" {
        let options = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("url")
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("sqlite");
        migrator.run(&pool).await.expect("migrate to 0006");
        Database::Sqlite(pool)
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        migrator.run(&pool).await.expect("migrate to 0006");
        Database::Postgres(pool)
    }
}

#[tokio::test]
async fn chunks_stored_before_locations_were_recorded_read_back_without_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut urls = vec![format!("sqlite://{}", dir.path().join("old.db").display())];
    urls.extend(lectern_db::testing::postgres_url().await);
    for url in urls {
        // What an older version wrote: a material and a chunk with the columns it knew.
        let old = migrated_before_locations(&url).await;
        classroom(&old, "c1").await;
        Materials::new(old.clone())
            .create(&material("m1", "c1", 100))
            .await
            .expect("create");
        let embedding: Vec<u8> = [1.0f32, 0.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let columns = "material_id, ordinal, page, heading, text, embedding";
        match &old {
            Database::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO material_chunks ({columns}) VALUES (?, ?, ?, ?, ?, ?)"
            )))
            .bind("m1")
            .bind(0)
            .bind(Some(2))
            .bind("Cells")
            .bind("Cells divide.")
            .bind(&embedding)
            .execute(pool)
            .await
            .map(drop),
            Database::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO material_chunks ({columns}) VALUES ($1, $2, $3, $4, $5, $6)"
            )))
            .bind("m1")
            .bind(0)
            .bind(Some(2))
            .bind("Cells")
            .bind("Cells divide.")
            .bind(&embedding)
            .execute(pool)
            .await
            .map(drop),
        }
        .expect("old chunk");
        old.close().await;

        // This version migrates it and reads the chunk with no location beyond its page.
        let database = Database::connect(&url).await.expect("migrated");
        let materials = Materials::new(database.clone());
        let expected = MaterialChunk {
            material_id: "m1".into(),
            ordinal: 0,
            page: Some(2),
            heading: Some("Cells".into()),
            text: "Cells divide.".into(),
            line_start: None,
            line_end: None,
            overlap_chars: None,
        };
        assert_eq!(
            materials.chunks("m1").await.expect("chunks"),
            vec![expected.clone()],
            "{}",
            database.backend()
        );
        assert_eq!(
            materials.chunk("m1", 0).await.expect("chunk"),
            Some(expected)
        );
        let vectors = materials.embeddings("m1").await.expect("vectors");
        assert_eq!(vectors[0].vector, vec![1.0, 0.0]);
        database.close().await;
    }
}
