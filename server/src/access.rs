//! Who may open which document, and how: the one place document access is decided.
//!
//! [`decide`] is a pure function of what is known about the document ([`DocFacts`]) and
//! the caller ([`Caller`]); [`resolve`] looks those facts up for a signed-in account. The
//! REST API (which documents `GET /sessions/{id}` lists, with which access) and the
//! WebSocket (whether a socket may open a document, and whether it may write) both go
//! through [`decide`], so they cannot disagree.
//!
//! | document | classroom faculty | the owning student | other students of the class | non-members |
//! |---|---|---|---|---|
//! | session notes/mindmap/chat | write | — | write while live, read when locked or ended | none |
//! | session lectern (`session/{id}/lectern`) | read | — | read | none |
//! | a student's fork | write | write until the session ends, then read | none | none |
//! | template | write | — | read | none |
//! | materials feed (`classroom/{id}/materials`) | read | — | read | none |
//! | not registered | none | — | none | none |
//!
//! A user's inbox (`user/{id}/inbox`, see `notifications`) belongs to no classroom: its
//! user reads it, nobody else opens it (admins included), and nobody writes it.
//!
//! Accounts with the server-wide `admin` role write everywhere except in a session's
//! `lectern` document, which they read like everyone: it holds what only the server may say
//! (the follow-the-teacher focus, AI job statuses and which Yjs client ids are AI jobs), so
//! nobody writes it from a socket; the server edits it through the room. Document tokens and
//! external access tokens are not decided here: a document token grants exactly its
//! document, and an external token's `docs` claim lists what it may write (see `ws.rs`).

use lectern_db::accounts::Role;
use lectern_db::classrooms::MemberRole;
use lectern_db::sessions::{DocKind, DocumentEntry, SessionState};
use lectern_db::{Classrooms, Database, DbError, Sessions};

pub use lectern_collab::Access;

use crate::auth::{Origin, Principal};

/// Why access could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Looking the document or the membership up failed.
    #[error("looking up document access failed")]
    Database(#[from] DbError),
    /// A registered document lacks what its kind needs (a fork without an owner, a
    /// session document without a session). Never written by this server; refused.
    #[error("document {doc_id:?} is registered inconsistently")]
    Inconsistent {
        /// The document.
        doc_id: String,
    },
}

/// What access depends on, about a registered document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocFacts {
    /// One of a session's own documents (notes, mindmap, chat).
    Session {
        /// The session's state.
        state: SessionState,
    },
    /// A session's server-owned state (`session/{id}/lectern`): focus, AI jobs, AI clients.
    /// Written by the server alone, whatever the session's state.
    SessionLectern,
    /// A student's copy of a handed-out template.
    Fork {
        /// The student it belongs to.
        owner_user_id: String,
        /// The state of the session it was handed out in.
        state: SessionState,
    },
    /// A classroom template.
    Template,
    /// The classroom's materials feed: upload and ingestion progress, written only by the
    /// server (see `materials::feed`).
    MaterialsFeed,
    /// A user's notification inbox (`user/{id}/inbox`), written only by the server. Not a
    /// classroom document: membership plays no part.
    Inbox {
        /// The user whose inbox it is.
        owner_user_id: String,
    },
}

impl DocFacts {
    /// The facts of a registered document.
    pub fn of(entry: &DocumentEntry) -> Result<Self, AccessError> {
        let document = &entry.document;
        let inconsistent = || AccessError::Inconsistent {
            doc_id: document.doc_id.clone(),
        };
        match document.kind {
            DocKind::Notes | DocKind::Mindmap | DocKind::Chat => Ok(Self::Session {
                state: entry.session_state.ok_or_else(inconsistent)?,
            }),
            DocKind::Lectern => {
                entry.session_state.ok_or_else(inconsistent)?;
                Ok(Self::SessionLectern)
            }
            DocKind::Fork => Ok(Self::Fork {
                owner_user_id: document.owner_user_id.clone().ok_or_else(inconsistent)?,
                state: entry.session_state.ok_or_else(inconsistent)?,
            }),
            DocKind::Template => Ok(Self::Template),
        }
    }
}

/// What access depends on, about the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The caller's account id.
    pub user_id: &'a str,
    /// The caller's server-wide role.
    pub role: Role,
    /// The caller's role in the document's classroom; `None` if not a member.
    pub membership: Option<MemberRole>,
}

/// The access `caller` has to a document with `facts`; `None` means it may not open it.
pub fn decide(facts: &DocFacts, caller: &Caller<'_>) -> Option<Access> {
    // Before the admin rule: what someone is notified of is theirs alone, and an edit
    // from any socket would forge what the server tells them.
    if let DocFacts::Inbox { owner_user_id } = facts {
        return (owner_user_id == caller.user_id).then_some(Access::Read);
    }
    if caller.role == Role::Admin {
        return Some(match facts {
            // Not even an admin's socket may speak for the server (see the module docs).
            DocFacts::SessionLectern => Access::Read,
            _ => Access::Write,
        });
    }
    match (caller.membership?, facts) {
        // Written by the server alone; a member's edit would corrupt what everyone sees,
        // and in the session's lectern document it would forge the focus or AI authorship.
        (_, DocFacts::MaterialsFeed | DocFacts::SessionLectern) => Some(Access::Read),
        (MemberRole::Faculty, _) => Some(Access::Write),
        (MemberRole::Student, DocFacts::Session { state }) => match state {
            SessionState::Live => Some(Access::Write),
            SessionState::Locked | SessionState::Ended => Some(Access::Read),
        },
        (
            MemberRole::Student,
            DocFacts::Fork {
                owner_user_id,
                state,
            },
        ) => {
            if owner_user_id != caller.user_id {
                return None;
            }
            match state {
                SessionState::Live | SessionState::Locked => Some(Access::Write),
                SessionState::Ended => Some(Access::Read),
            }
        }
        (MemberRole::Student, DocFacts::Template) => Some(Access::Read),
        (_, DocFacts::Inbox { .. }) => None, // decided above
    }
}

/// The access a signed-in account has to `doc_id`, from the database.
///
/// Only for local accounts: an external principal gets `None` here, because what an
/// external token grants is its `docs` claim, which the WebSocket applies itself. An
/// unregistered document id gives `None` to everyone but admins.
pub async fn resolve(
    db: &Database,
    principal: &Principal,
    doc_id: &str,
) -> Result<Option<Access>, AccessError> {
    if principal.origin == Origin::External {
        return Ok(None);
    }
    if let Some(owner) = crate::notifications::inbox::owner_of(doc_id) {
        let facts = DocFacts::Inbox {
            owner_user_id: owner.to_owned(),
        };
        return Ok(decide(
            &facts,
            &Caller {
                user_id: &principal.subject,
                role: principal.role,
                membership: None,
            },
        ));
    }
    let admin = principal.role == Role::Admin;
    let (facts, classroom_id) = match crate::materials::feed::classroom_of(doc_id) {
        Some(classroom_id) => (DocFacts::MaterialsFeed, classroom_id.to_owned()),
        None => {
            // Admins too: a session's lectern document is read-only even for them.
            let Some(entry) = Sessions::new(db.clone()).document(doc_id).await? else {
                return Ok(admin.then_some(Access::Write));
            };
            (DocFacts::of(&entry)?, entry.document.classroom_id)
        }
    };
    let membership = if admin {
        None // `decide` does not look at an admin's membership
    } else {
        Classrooms::new(db.clone())
            .membership(&classroom_id, &principal.subject)
            .await?
    };
    Ok(decide(
        &facts,
        &Caller {
            user_id: &principal.subject,
            role: principal.role,
            membership,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 3] = [Role::Faculty, Role::Student, Role::Admin];
    const MEMBERSHIPS: [Option<MemberRole>; 3] =
        [None, Some(MemberRole::Student), Some(MemberRole::Faculty)];
    const STATES: [SessionState; 3] = [
        SessionState::Live,
        SessionState::Locked,
        SessionState::Ended,
    ];

    /// Every document shape, with "me" as the owner of one of the forks.
    fn all_facts() -> Vec<DocFacts> {
        let mut facts = vec![
            DocFacts::Template,
            DocFacts::MaterialsFeed,
            DocFacts::SessionLectern,
        ];
        for owner in ["me", "someone-else"] {
            facts.push(DocFacts::Inbox {
                owner_user_id: owner.into(),
            });
        }
        for state in STATES {
            facts.push(DocFacts::Session { state });
            for owner in ["me", "someone-else"] {
                facts.push(DocFacts::Fork {
                    owner_user_id: owner.into(),
                    state,
                });
            }
        }
        facts
    }

    /// The rules written out independently of `decide`, one row of the table in the
    /// module docs per arm.
    fn expected(facts: &DocFacts, role: Role, membership: Option<MemberRole>) -> Option<Access> {
        use Access::{Read, Write};
        if let DocFacts::Inbox { owner_user_id } = facts {
            return (owner_user_id == "me").then_some(Read);
        }
        if role == Role::Admin {
            return Some(if *facts == DocFacts::SessionLectern {
                Read
            } else {
                Write
            });
        }
        let student = membership == Some(MemberRole::Student);
        let faculty = membership == Some(MemberRole::Faculty);
        match facts {
            _ if !faculty && !student => None,
            DocFacts::MaterialsFeed | DocFacts::SessionLectern => Some(Read),
            _ if faculty => Some(Write),
            DocFacts::Session { state } if *state == SessionState::Live => Some(Write),
            DocFacts::Session { .. } => Some(Read),
            DocFacts::Fork { owner_user_id, .. } if owner_user_id != "me" => None,
            DocFacts::Fork { state, .. } if *state == SessionState::Ended => Some(Read),
            DocFacts::Fork { .. } => Some(Write),
            DocFacts::Template => Some(Read),
            DocFacts::Inbox { .. } => unreachable!("decided above"),
        }
    }

    #[test]
    fn decide_matches_the_rules_for_every_combination() {
        let mut checked = 0;
        for facts in all_facts() {
            for role in ROLES {
                for membership in MEMBERSHIPS {
                    let caller = Caller {
                        user_id: "me",
                        role,
                        membership,
                    };
                    assert_eq!(
                        decide(&facts, &caller),
                        expected(&facts, role, membership),
                        "{facts:?} {caller:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 14 * 3 * 3);
    }

    fn student(membership: Option<MemberRole>) -> Caller<'static> {
        Caller {
            user_id: "me",
            role: Role::Student,
            membership,
        }
    }

    #[test]
    fn locking_and_ending_make_session_documents_read_only_for_students() {
        let enrolled = student(Some(MemberRole::Student));
        let access = |state| decide(&DocFacts::Session { state }, &enrolled);
        assert_eq!(access(SessionState::Live), Some(Access::Write));
        assert_eq!(access(SessionState::Locked), Some(Access::Read));
        assert_eq!(access(SessionState::Ended), Some(Access::Read));
    }

    #[test]
    fn nobody_writes_a_sessions_lectern_document_but_every_member_reads_it() {
        let caller = |role, membership| Caller {
            user_id: "me",
            role,
            membership,
        };
        for (role, membership, access) in [
            (Role::Student, Some(MemberRole::Student), Some(Access::Read)),
            (Role::Faculty, Some(MemberRole::Faculty), Some(Access::Read)),
            (Role::Admin, None, Some(Access::Read)),
            (Role::Student, None, None),
            (Role::Faculty, None, None),
        ] {
            assert_eq!(
                decide(&DocFacts::SessionLectern, &caller(role, membership)),
                access,
                "{role:?} {membership:?}"
            );
        }
    }

    #[test]
    fn forks_are_private_to_their_student_and_faculty() {
        let fork = |owner: &str, state| DocFacts::Fork {
            owner_user_id: owner.into(),
            state,
        };
        let enrolled = student(Some(MemberRole::Student));
        assert_eq!(
            decide(&fork("me", SessionState::Locked), &enrolled),
            Some(Access::Write),
            "locking the session does not lock a student's own copy"
        );
        assert_eq!(
            decide(&fork("me", SessionState::Ended), &enrolled),
            Some(Access::Read)
        );
        assert_eq!(
            decide(&fork("someone-else", SessionState::Live), &enrolled),
            None
        );
        assert_eq!(
            decide(
                &fork("me", SessionState::Live),
                &student(None) // removed from the class since
            ),
            None
        );
        let teacher = Caller {
            user_id: "t",
            role: Role::Faculty,
            membership: Some(MemberRole::Faculty),
        };
        assert_eq!(
            decide(&fork("me", SessionState::Ended), &teacher),
            Some(Access::Write)
        );
    }

    #[test]
    fn a_faculty_account_has_no_access_to_other_classrooms() {
        let outsider = Caller {
            user_id: "t",
            role: Role::Faculty,
            membership: None,
        };
        for facts in all_facts() {
            assert_eq!(decide(&facts, &outsider), None, "{facts:?}");
        }
    }

    #[test]
    fn facts_come_from_registry_entries_and_inconsistent_ones_are_refused() {
        use lectern_db::sessions::Document;
        let entry = |kind, owner: Option<&str>, state: Option<SessionState>| DocumentEntry {
            document: Document {
                doc_id: "d".into(),
                classroom_id: "c".into(),
                session_id: state.map(|_| "s".to_owned()),
                kind,
                owner_user_id: owner.map(str::to_owned),
                template_doc_id: None,
                created_at: 0,
            },
            session_state: state,
        };
        assert_eq!(
            DocFacts::of(&entry(DocKind::Chat, None, Some(SessionState::Locked))).ok(),
            Some(DocFacts::Session {
                state: SessionState::Locked
            })
        );
        assert_eq!(
            DocFacts::of(&entry(DocKind::Fork, Some("u"), Some(SessionState::Live))).ok(),
            Some(DocFacts::Fork {
                owner_user_id: "u".into(),
                state: SessionState::Live
            })
        );
        assert_eq!(
            DocFacts::of(&entry(DocKind::Template, None, None)).ok(),
            Some(DocFacts::Template)
        );
        assert!(DocFacts::of(&entry(DocKind::Fork, None, Some(SessionState::Live))).is_err());
        assert!(DocFacts::of(&entry(DocKind::Fork, Some("u"), None)).is_err());
        assert!(DocFacts::of(&entry(DocKind::Notes, None, None)).is_err());
        assert_eq!(
            DocFacts::of(&entry(DocKind::Lectern, None, Some(SessionState::Ended))).ok(),
            Some(DocFacts::SessionLectern)
        );
        assert!(DocFacts::of(&entry(DocKind::Lectern, None, None)).is_err());
    }
}
