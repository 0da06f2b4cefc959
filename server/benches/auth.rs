//! What authentication costs: verifying a token (once per socket, at upgrade) and deciding
//! a document's access (once per document opened). Per message the room only compares the
//! member's stored access, which is not measurable next to applying the update.
//!
//! `cargo bench -p lectern --bench auth`

use criterion::{Criterion, criterion_group, criterion_main};
use lectern::Config;
use lectern::access::{Caller, DocFacts, decide};
use lectern::auth::{Authenticator, DocAccess};
use lectern_db::accounts::Role;
use lectern_db::classrooms::MemberRole;
use lectern_db::sessions::SessionState;

fn authenticator() -> Authenticator {
    let mut config = Config::with_defaults(
        "127.0.0.1:0".parse().expect("address"),
        std::env::temp_dir(),
    );
    config.jwt_secret = Some(String::from("benchmark-secret-of-at-least-32-bytes!").into());
    Authenticator::from_config(&config).expect("authenticator")
}

fn tokens(c: &mut Criterion) {
    let auth = authenticator();
    let access = auth
        .issue_access("user-1", Role::Student, "login-1")
        .expect("token")
        .token;
    let doc = auth
        .issue_doc_token("session/1/notes", DocAccess::Full)
        .expect("token")
        .token;
    c.bench_function("verify_access (HS256)", |b| {
        b.iter(|| {
            auth.verify_access(std::hint::black_box(&access))
                .expect("valid")
        })
    });
    c.bench_function("verify_doc_token (HS256)", |b| {
        b.iter(|| {
            auth.verify_doc_token(std::hint::black_box(&doc))
                .expect("valid")
        })
    });
    let facts = DocFacts::Session {
        state: SessionState::Locked,
    };
    let caller = Caller {
        user_id: "user-1",
        role: Role::Student,
        membership: Some(MemberRole::Student),
    };
    c.bench_function("decide (pure access rule)", |b| {
        b.iter(|| decide(std::hint::black_box(&facts), std::hint::black_box(&caller)))
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
