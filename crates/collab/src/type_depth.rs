//! Bounds the nesting depth of Yjs *types* (a `Y.Map` in a `Y.Map` in ...), checked before
//! yrs integrates an update.
//!
//! yrs decodes, applies and encodes a chain of 10,000 nested maps (an 80 KB update) without
//! trouble, but deletes and garbage-collects nested types recursively: deleting the chain's
//! root overflows the stack and aborts the process. The chain can be built one level per
//! update and deleted much later, so the only bound that holds is on the document itself:
//! no type in a room's document is ever deeper than `max_type_depth` (a type directly in a
//! root has depth 1). Then every later deletion recurses at most that deep.
//!
//! The v1 format does not say how deep a new type is. Each item names its parent either
//! directly (a root name or the id of a type item) or only as "the same parent as my origin
//! (else my right origin)". [`TypeDepths::check`] resolves that for every type item of an
//! update: through the other structs of the same update (by id range: an origin may point
//! inside a multi-character string) or into the document (`StickyIndex::get_offset` gives
//! the type containing an id). Everything is iterative: a 10,000-level chain in one update is
//! resolved with a heap stack, never recursion.
//!
//! A type whose parent cannot be resolved yet (an origin the room has not seen) has an
//! unknown depth: the update is not applied, and the sender is asked for what the room lacks
//! (its answer carries the missing part and the type together). So the structs yrs holds as
//! pending are only ones whose depth was already checked.

use std::collections::HashMap;

use yrs::{Assoc, BranchID, ClientID, ID, ReadTxn, StateVector, StickyIndex};

use crate::limits::{LimitError, ParentRef, StructKind, StructRef};

/// The default bound on the nesting depth of types. Real documents nest a handful of levels
/// (a y-prosemirror document: fragment, list, list item, paragraph... about 10). A chain of
/// this depth is created, deleted, collected, encoded, reloaded and dropped on a 256 KiB
/// stack in a debug build (`a_type_chain_at_the_limit_fits_a_small_stack`). Measured with a
/// chain applied, encoded and its root deleted on a thread of a given stack (debug build,
/// yrs 0.28.1): 256 KiB overflows between 160 and 192 levels, the 2 MiB of a tokio worker
/// between 1,536 and 1,792; the 10,000-level chain of the original report needs ~14 MiB.
pub const DEFAULT_MAX_TYPE_DEPTH: u32 = 64;

/// Document lookups (`get_offset` on an item that is not a type) one update may cost. Each
/// walks the item's left siblings, so an update naming thousands of far-apart origins could
/// cost the room seconds; a real update names one origin in the document per place it edits
/// (the rest of a paste chains inside the update, and a type's depth is cached). Generous,
/// because an update over the bound is refused and a client that resyncs after a long
/// offline session sends all its scattered edits in one update: refusing that would lock it
/// out of the document.
pub(crate) const MAX_DOCUMENT_LOOKUPS: usize = 1024;

/// Known type depths are a cache; past this many entries it is cleared and refilled lazily,
/// so a room that keeps creating and deleting types cannot grow it without bound.
const MAX_CACHED_DEPTHS: usize = 1 << 20;

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Every type the update creates is within the limit: their ids and depths, to record
    /// with [`TypeDepths::record`] once the update is applied.
    Within(Vec<(ID, u32)>),
    /// Some type's parent depends on changes the document does not have yet.
    Unknown,
}

/// Where the container of an item (the type it lives in) resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    /// A type of this depth (0: a root).
    Depth(u32),
    /// No type: yrs turns the item into garbage (its origin was collected, its parent
    /// deleted), so it creates nothing.
    Gone,
    /// Depends on changes the document does not have.
    Unknown,
}

/// The depths of the types in one document, filled lazily (types never move).
#[derive(Debug, Default)]
pub(crate) struct TypeDepths {
    known: HashMap<ID, u32>,
}

impl TypeDepths {
    /// Checks that no type `structs` (one update, from `limits::scan_update_v1`) creates is
    /// deeper than `max`, given the document `txn` reads (with every update applied before
    /// this one).
    pub(crate) fn check<T: ReadTxn>(
        &mut self,
        txn: &T,
        structs: &[StructRef],
        max: u32,
    ) -> Result<Checked, LimitError> {
        let has_types = structs
            .iter()
            .any(|s| matches!(s.kind, StructKind::Item { is_type: true, .. }));
        if !has_types {
            return Ok(Checked::Within(Vec::new()));
        }
        if self.known.len() > MAX_CACHED_DEPTHS {
            self.known.clear();
        }
        let mut resolver = Resolver::new(txn, structs, &mut self.known);
        let mut created = Vec::new();
        let mut unknown = false;
        for (index, structure) in structs.iter().enumerate() {
            if !matches!(structure.kind, StructKind::Item { is_type: true, .. }) {
                continue;
            }
            let container = resolver.container(index)?;
            if resolver.lookups > MAX_DOCUMENT_LOOKUPS {
                return Err(LimitError::TooManyTypeLookups {
                    max: MAX_DOCUMENT_LOOKUPS,
                });
            }
            match container {
                Container::Depth(depth) => {
                    let depth = depth.saturating_add(1);
                    if depth > max {
                        return Err(LimitError::TypesTooDeep { max });
                    }
                    created.push((structure.id, depth));
                }
                Container::Gone => {}
                Container::Unknown => unknown = true,
            }
        }
        Ok(if unknown {
            Checked::Unknown
        } else {
            Checked::Within(created)
        })
    }

    /// Records the depths of types an applied update created.
    pub(crate) fn record(&mut self, created: Vec<(ID, u32)>) {
        self.known.extend(created);
    }
}

/// Resolves containers for the structs of one update.
struct Resolver<'a, T: ReadTxn> {
    txn: &'a T,
    state: StateVector,
    structs: &'a [StructRef],
    /// Indexes of `structs` per client, ordered by clock, to find the struct holding an id.
    by_client: HashMap<ClientID, Vec<usize>>,
    /// Resolved containers, per struct.
    resolved: Vec<Option<Container>>,
    /// Structs on the resolution stack (a second visit is a cycle).
    visiting: Vec<bool>,
    /// Document lookups that walked siblings so far.
    lookups: usize,
    known: &'a mut HashMap<ID, u32>,
}

/// One step of resolving a struct's container.
enum Step {
    Done(Container),
    /// Needs the container of this other struct first.
    Needs(usize),
}

impl<'a, T: ReadTxn> Resolver<'a, T> {
    fn new(txn: &'a T, structs: &'a [StructRef], known: &'a mut HashMap<ID, u32>) -> Self {
        let mut by_client: HashMap<ClientID, Vec<usize>> = HashMap::new();
        for (index, structure) in structs.iter().enumerate() {
            by_client
                .entry(structure.id.client)
                .or_default()
                .push(index);
        }
        for indexes in by_client.values_mut() {
            indexes.sort_by_key(|&index| structs[index].id.clock);
        }
        Self {
            txn,
            state: txn.state_vector(),
            structs,
            by_client,
            resolved: vec![None; structs.len()],
            visiting: vec![false; structs.len()],
            lookups: 0,
            known,
        }
    }

    /// The container of struct `start`, with an explicit stack.
    fn container(&mut self, start: usize) -> Result<Container, LimitError> {
        let mut stack = vec![start];
        self.visiting[start] = true;
        while let Some(&index) = stack.last() {
            if self.resolved[index].is_some() {
                self.visiting[index] = false;
                stack.pop();
                continue;
            }
            match self.step(index) {
                Step::Done(container) => {
                    self.resolved[index] = Some(container);
                }
                Step::Needs(other) => {
                    if self.visiting[other] {
                        return Err(LimitError::ParentCycle);
                    }
                    self.visiting[other] = true;
                    stack.push(other);
                }
            }
        }
        Ok(self.resolved[start].unwrap_or(Container::Unknown))
    }

    /// Resolves struct `index` if what it depends on is resolved.
    fn step(&mut self, index: usize) -> Step {
        let StructKind::Item { parent, .. } = &self.structs[index].kind else {
            return Step::Done(Container::Gone);
        };
        match parent {
            ParentRef::Root => Step::Done(Container::Depth(0)),
            ParentRef::Type(id) => self.type_depth(*id),
            ParentRef::SameAs { origin, right } => {
                // yrs takes the origin's parent when it has one, else the right origin's.
                let mut found = Container::Gone;
                for id in [origin, right].into_iter().flatten() {
                    match self.container_of_id(*id) {
                        Step::Done(Container::Gone) => continue,
                        Step::Done(container) => {
                            found = container;
                            break;
                        }
                        needs => return needs,
                    }
                }
                Step::Done(found)
            }
        }
    }

    /// The struct of this update holding `id`, if any.
    fn find(&self, id: ID) -> Option<usize> {
        let indexes = self.by_client.get(&id.client)?;
        let after = indexes.partition_point(|&index| self.structs[index].id.clock <= id.clock);
        let index = *indexes.get(after.checked_sub(1)?)?;
        let structure = &self.structs[index];
        (id.clock - structure.id.clock < structure.len).then_some(index)
    }

    /// The container of the item holding `id` (an origin).
    fn container_of_id(&mut self, id: ID) -> Step {
        match self
            .find(id)
            .map(|index| (index, &self.structs[index].kind))
        {
            Some((index, StructKind::Item { .. })) => match self.resolved[index] {
                Some(container) => Step::Done(container),
                None => Step::Needs(index),
            },
            Some((_, StructKind::Gc)) => Step::Done(Container::Gone),
            Some((_, StructKind::Skip)) | None => Step::Done(self.doc_container_of_id(id)),
        }
    }

    /// The depth of the type item `id` (an explicit parent), as a container.
    fn type_depth(&mut self, id: ID) -> Step {
        match self
            .find(id)
            .map(|index| (index, &self.structs[index].kind))
        {
            Some((index, StructKind::Item { is_type: true, .. })) => match self.resolved[index] {
                Some(Container::Depth(depth)) => {
                    Step::Done(Container::Depth(depth.saturating_add(1)))
                }
                Some(other) => Step::Done(other),
                None => Step::Needs(index),
            },
            // yrs refuses (or collects) an item whose parent is not a type.
            Some((_, StructKind::Item { .. } | StructKind::Gc)) => Step::Done(Container::Gone),
            Some((_, StructKind::Skip)) | None => Step::Done(self.doc_type_depth(id)),
        }
    }

    fn in_document(&self, id: ID) -> bool {
        id.clock < self.state.get(&id.client)
    }

    /// The container, in the document, of the item holding `id`.
    fn doc_container_of_id(&mut self, id: ID) -> Container {
        if !self.in_document(id) {
            return Container::Unknown;
        }
        // A type's depth is cached: the common "append after the last Y.Map" never walks.
        if BranchID::get_nested(self.txn, &id).is_some() {
            return match self.doc_type_depth(id) {
                Container::Depth(depth) => Container::Depth(depth - 1),
                other => other,
            };
        }
        self.doc_parent(id)
    }

    /// The type containing document item `id`, as a container: found through
    /// `get_offset`, which walks the item's left siblings.
    fn doc_parent(&mut self, id: ID) -> Container {
        self.lookups += 1;
        if self.lookups > MAX_DOCUMENT_LOOKUPS {
            return Container::Gone; // refused by `check`
        }
        let offset = StickyIndex::from_id(id, Assoc::After).get_offset(self.txn);
        match offset.map(|offset| offset.branch.id()) {
            None => Container::Gone,
            Some(BranchID::Root(_)) => Container::Depth(0),
            Some(BranchID::Nested(parent)) => self.doc_type_depth(parent),
        }
    }

    /// The depth of type item `id` in the document, walking up (iteratively) to a root or
    /// to a type whose depth is known, and caching every depth on the way.
    fn doc_type_depth(&mut self, id: ID) -> Container {
        if !self.in_document(id) {
            return Container::Unknown;
        }
        let mut chain = Vec::new();
        let mut current = id;
        let base = loop {
            if let Some(&depth) = self.known.get(&current) {
                break depth;
            }
            if BranchID::get_nested(self.txn, &current).is_none() {
                // Not a type (or collected): nothing lives in it.
                return Container::Gone;
            }
            chain.push(current);
            let offset = StickyIndex::from_id(current, Assoc::After).get_offset(self.txn);
            match offset.map(|offset| offset.branch.id()) {
                None => return Container::Gone,
                Some(BranchID::Root(_)) => break 0,
                Some(BranchID::Nested(parent)) => current = parent,
            }
        };
        let mut depth = base;
        for ancestor in chain.into_iter().rev() {
            depth += 1;
            self.known.insert(ancestor, depth);
        }
        Container::Depth(depth)
    }
}
