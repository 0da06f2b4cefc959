//! Bounds on untrusted Yjs bytes, checked *before* yrs decodes them.
//!
//! yrs decodes, integrates, encodes and drops `Any` values (lib0 tags 116..127, where 117
//! arrays and 118 maps nest) and the JSON of embeds and formats (through serde_json)
//! recursively. A 24 KB frame of nested arrays overflows the stack and aborts the whole
//! process (`catch_unwind` cannot catch a stack overflow), and a shallower nesting that
//! decodes is stored and then aborts the server when the room encodes its snapshot. So every
//! byte sequence that reaches `Update::decode_v1` first goes through [`check_update_v1`]: a
//! walk of the whole v1 update with an explicit stack, never recursion, that follows yrs'
//! own reading of the format step by step (`Update::decode`, `Item` decoding and
//! `ItemContent::decode` in yrs 0.28) so that what is checked is exactly what yrs will read.
//!
//! It bounds:
//! - the nesting depth of `Any` values and of embed/format JSON ([`UpdateLimits::max_depth`]);
//! - every count read from the wire against the bytes left (an element takes at least one
//!   byte, so a larger count is a lie meant to make a decoder reserve memory);
//! - the total number of structs and values ([`UpdateLimits::max_values`]).
//!
//! The state vectors of sync step 1 and awareness updates have no nesting; their counts are
//! checked against the bytes left by [`check_state_vector_v1`] and [`check_awareness_v1`].

use std::collections::HashSet;

use yrs::encoding::read::{Cursor, Read};
use yrs::{ClientID, ID};

/// Limits applied to one encoded update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateLimits {
    /// The deepest nesting of arrays and maps inside one `Any` value or one embed/format JSON
    /// value (a flat value has depth 0, `[[1]]` has depth 2).
    pub max_depth: usize,
    /// The most structs (items, GC and skip ranges) plus values (`Any` values, JSON strings,
    /// delete-set ranges) in one update.
    pub max_values: usize,
}

/// The default depth bound. Real documents nest a handful of levels; yrs' recursion with 32
/// levels is proven to decode, apply, encode, reload and drop on a 256 KiB stack in a debug
/// build (see the `deepest_accepted_update_fits_a_small_stack` test), a wide margin under the
/// 2 MiB of a tokio worker.
pub const DEFAULT_MAX_DEPTH: usize = 32;

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_values: 1_000_000,
        }
    }
}

/// What a checked update contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// The client ids whose structs the update carries, in wire order (each once: an update
    /// that names a client in two groups is refused).
    /// (Delete-set clients are not included: deleting does not author content.)
    pub clients: Vec<u64>,
    /// Structs read (items, GC and skip ranges).
    pub structs: usize,
    /// Values read (`Any` values, JSON strings, delete-set ranges).
    pub values: usize,
    /// The deepest nesting met.
    pub depth: usize,
}

/// Why bytes were refused before decoding.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The bytes are not a well-formed update (or state vector, or awareness update).
    #[error("malformed: {0}")]
    Malformed(#[from] yrs::encoding::read::Error),
    /// A struct kind, content kind or type reference that yrs does not read.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which kind of tag.
        what: &'static str,
        /// Its value.
        tag: u8,
    },
    /// A count larger than the bytes left could ever hold.
    #[error("a count of {count} exceeds the {remaining} bytes left")]
    CountExceedsInput {
        /// The count read.
        count: u64,
        /// The bytes left after it.
        remaining: usize,
    },
    /// Values nest deeper than allowed.
    #[error("values nest deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More structs and values than allowed.
    #[error("more than {max} structs and values")]
    TooManyValues {
        /// The limit.
        max: usize,
    },
    /// A client id of 2^53 or more: Yjs ids are 53-bit (JavaScript-safe) integers; yrs
    /// asserts that in debug builds and silently truncates in release ones, so such an id
    /// could pose as another client's.
    #[error("client id {0} is wider than 53 bits")]
    ClientIdTooLarge(u64),
    /// A clock (or the end of a range) of 2^31 or more, where yrs' arithmetic overflows.
    #[error("clock {0} is past 2^31")]
    ClockTooLarge(u32),
    /// The update creates a Yjs type nested deeper than allowed (`type_depth.rs`).
    #[error("types nest deeper than {max}")]
    TypesTooDeep {
        /// The limit.
        max: u32,
    },
    /// Items name each other as "same parent as" in a circle.
    #[error("item parents form a cycle")]
    ParentCycle,
    /// Finding where the update's new types go would look up too many items of the
    /// document (`type_depth::MAX_DOCUMENT_LOOKUPS`).
    #[error("more than {max} document lookups to place new types")]
    TooManyTypeLookups {
        /// The limit.
        max: usize,
    },
}

// Struct and content tags, as yrs' `block.rs` numbers them.
const GC: u8 = 0;
const SKIP: u8 = 10;
const CONTENT_DELETED: u8 = 1;
const CONTENT_JSON: u8 = 2;
const CONTENT_BINARY: u8 = 3;
const CONTENT_STRING: u8 = 4;
const CONTENT_EMBED: u8 = 5;
const CONTENT_FORMAT: u8 = 6;
const CONTENT_TYPE: u8 = 7;
const CONTENT_ANY: u8 = 8;
const CONTENT_DOC: u8 = 9;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;
// Type references (`types/mod.rs`); 7 (weak links) needs a yrs feature this build lacks.
const TYPE_XML_ELEMENT: u8 = 3;
const KNOWN_TYPES: [u8; 8] = [0, 1, 2, 4, 5, 6, 9, 15];

/// Checks an encoded (v1) update against `limits` without recursing, and summarises it.
pub fn check_update_v1(bytes: &[u8], limits: &UpdateLimits) -> Result<UpdateSummary, LimitError> {
    walk_update_v1(bytes, limits, None)
}

/// Like [`check_update_v1`], and also lists every struct of the update with where it says
/// its parent is (for the type depth check, `type_depth.rs`).
pub(crate) fn scan_update_v1(
    bytes: &[u8],
    limits: &UpdateLimits,
) -> Result<(UpdateSummary, Vec<StructRef>), LimitError> {
    let mut structs = Vec::new();
    let summary = walk_update_v1(bytes, limits, Some(&mut structs))?;
    Ok((summary, structs))
}

fn walk_update_v1(
    bytes: &[u8],
    limits: &UpdateLimits,
    structs: Option<&mut Vec<StructRef>>,
) -> Result<UpdateSummary, LimitError> {
    let mut walk = Walk {
        cursor: Cursor::new(bytes),
        limits,
        summary: UpdateSummary::default(),
        structs,
    };
    let clients = walk.count(1)?;
    // A set beside the list: with thousands of client groups a linear `contains` made the
    // check quadratic (found by fuzzing: 24 s of CPU for a 483 KB update).
    let mut seen = HashSet::new();
    for _ in 0..clients {
        let structs = walk.count(1)?;
        let client = client_id(&mut walk.cursor)?;
        let mut clock = read_clock(&mut walk.cursor)?;
        // Yjs writes one group per client. yrs merges repeated groups and then adds their
        // clocks unchecked (an overflow panic in debug builds, found by fuzzing), and each
        // group's bounds below hold only for itself: refuse repeats.
        if !seen.insert(client) {
            return Err(LimitError::Malformed(
                yrs::encoding::read::Error::UnexpectedValue,
            ));
        }
        walk.summary.clients.push(client);
        for _ in 0..structs {
            let len = walk.structure(client, clock)?;
            clock = end_of_range(clock, len)?;
        }
    }
    walk.delete_set()?;
    Ok(walk.summary)
}

/// One struct of an update, as far as the type depth check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StructRef {
    /// Its first id.
    pub id: ID,
    /// How many ids (clock values) it covers.
    pub len: u32,
    /// What it is.
    pub kind: StructKind,
}

/// What a struct is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StructKind {
    /// A garbage-collected range: nothing lives there.
    Gc,
    /// A range the update does not carry.
    Skip,
    /// An item; `is_type` when its content is a Yjs type (content tag 7), `is_text` when it
    /// is text (content tag 4, its length counted in UTF-16 code units).
    Item {
        is_type: bool,
        is_text: bool,
        parent: ParentRef,
    },
}

/// Where an item says its parent is, as written on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParentRef {
    /// A root type, by name.
    Root,
    /// The type item with this id.
    Type(ID),
    /// The same parent as the item containing `origin` or else the one containing `right`
    /// (the v1 format writes parent info only when both are absent; yrs takes the origin's
    /// parent when the origin is a live item, else the right origin's).
    SameAs {
        /// The item's origin (left neighbour when created).
        origin: Option<ID>,
        /// Its right origin.
        right: Option<ID>,
    },
}

/// How much text `structs` insert into a document whose state is `state`: the lengths
/// (UTF-16 code units) of the text items, or their parts, the document does not have yet.
pub(crate) fn new_text_len(structs: &[StructRef], state: &yrs::StateVector) -> u64 {
    structs
        .iter()
        .filter(|structure| matches!(structure.kind, StructKind::Item { is_text: true, .. }))
        .map(|structure| {
            let known = state.get(&structure.id.client);
            let end = structure.id.clock.saturating_add(structure.len);
            u64::from(end.saturating_sub(known.max(structure.id.clock)))
        })
        .sum()
}

/// Checks an encoded (v1) state vector: its count against the bytes left.
pub fn check_state_vector_v1(bytes: &[u8]) -> Result<(), LimitError> {
    let mut cursor = Cursor::new(bytes);
    // A client id and a clock take at least one byte each.
    let entries = count(&mut cursor, 2)?;
    for _ in 0..entries {
        client_id(&mut cursor)?;
        read_clock(&mut cursor)?;
    }
    Ok(())
}

/// Checks an encoded (v1) awareness update: its count against the bytes left. Awareness
/// states stay JSON strings in yrs (never parsed into values), so they cannot nest.
pub fn check_awareness_v1(bytes: &[u8]) -> Result<(), LimitError> {
    let mut cursor = Cursor::new(bytes);
    // A client id, a clock and a string length take at least one byte each.
    let entries = count(&mut cursor, 3)?;
    for _ in 0..entries {
        client_id(&mut cursor)?;
        let _clock: u32 = cursor.read_var()?;
        let _state = cursor.read_string()?;
    }
    Ok(())
}

/// Reads a client id, refusing ids yrs cannot represent (see [`LimitError::ClientIdTooLarge`]).
fn client_id(cursor: &mut Cursor<'_>) -> Result<u64, LimitError> {
    let client: u64 = cursor.read_var()?;
    if client >= 1 << 53 {
        return Err(LimitError::ClientIdTooLarge(client));
    }
    Ok(client)
}

/// The largest clock accepted. yrs does clock arithmetic in `i32` in places (the offset of
/// a block against the document's clock: an overflow panic in debug builds, garbage in
/// release ones; found by fuzzing) and adds ranges unchecked in `u32`, so clocks and range
/// ends stay below 2^31: two billion insertions by one client, far past any real document
/// (the document size limit is reached long before).
const MAX_CLOCK: u32 = i32::MAX as u32;

/// Reads a clock, refusing one past [`MAX_CLOCK`].
fn read_clock(cursor: &mut Cursor<'_>) -> Result<u32, LimitError> {
    let clock: u32 = cursor.read_var()?;
    if clock > MAX_CLOCK {
        return Err(LimitError::ClockTooLarge(clock));
    }
    Ok(clock)
}

/// The clock after a range of `len` starting at `clock`, refusing ranges that end past
/// [`MAX_CLOCK`].
fn end_of_range(clock: u32, len: u32) -> Result<u32, LimitError> {
    match clock.checked_add(len) {
        Some(end) if end <= MAX_CLOCK => Ok(end),
        _ => Err(LimitError::ClockTooLarge(clock.saturating_add(len))),
    }
}

/// Skips a signed varint as yrs reads it (`Any` integers). yrs shifts each further byte 7
/// bits more without checking, and an eleventh byte shifts past 64 bits (a panic in debug
/// builds; found by fuzzing): ten bytes hold any `i64`, so longer ones are refused.
fn skip_var_i64(cursor: &mut Cursor<'_>) -> Result<(), LimitError> {
    for _ in 0..10 {
        if cursor.read_u8()? < 0x80 {
            return Ok(());
        }
    }
    Err(LimitError::Malformed(
        yrs::encoding::read::Error::InvalidVarInt,
    ))
}

/// Reads a count of elements that take at least `min_bytes` each, refusing counts the bytes
/// left cannot hold.
fn count(cursor: &mut Cursor<'_>, min_bytes: usize) -> Result<u64, LimitError> {
    let count: u64 = cursor.read_var()?;
    let remaining = cursor.buf.len() - cursor.next;
    if count > (remaining / min_bytes) as u64 {
        return Err(LimitError::CountExceedsInput { count, remaining });
    }
    Ok(count)
}

struct Walk<'a> {
    cursor: Cursor<'a>,
    limits: &'a UpdateLimits,
    summary: UpdateSummary,
    /// Where to list the structs read, when the caller wants them.
    structs: Option<&'a mut Vec<StructRef>>,
}

/// One open container while walking an `Any` value.
struct Open {
    /// Children still to read.
    left: u64,
    /// Map children are preceded by their key.
    is_map: bool,
}

impl Walk<'_> {
    fn count(&mut self, min_bytes: usize) -> Result<u64, LimitError> {
        count(&mut self.cursor, min_bytes)
    }

    /// Counts one more struct or value against the total.
    fn tally(&mut self, structure: bool) -> Result<(), LimitError> {
        if structure {
            self.summary.structs += 1;
        } else {
            self.summary.values += 1;
        }
        if self.summary.structs + self.summary.values > self.limits.max_values {
            return Err(LimitError::TooManyValues {
                max: self.limits.max_values,
            });
        }
        Ok(())
    }

    /// One struct starting at `client`/`clock`, as `Update::decode_block` reads it; returns
    /// how many ids it covers.
    fn structure(&mut self, client: u64, clock: u32) -> Result<u32, LimitError> {
        self.tally(true)?;
        let info = self.cursor.read_u8()?;
        let id = ID::new(ClientID::new(client), clock);
        match info {
            SKIP | GC => {
                let len: u32 = self.cursor.read_var()?;
                let kind = if info == GC {
                    StructKind::Gc
                } else {
                    StructKind::Skip
                };
                self.record(StructRef { id, len, kind });
                return Ok(len);
            }
            _ => {}
        }
        let cannot_copy_parent_info = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0;
        let origin = if info & HAS_ORIGIN != 0 {
            Some(self.id()?)
        } else {
            None
        };
        let right = if info & HAS_RIGHT_ORIGIN != 0 {
            Some(self.id()?)
        } else {
            None
        };
        let mut parent = ParentRef::SameAs { origin, right };
        if cannot_copy_parent_info {
            parent = ParentRef::Root;
            let parent_info: u32 = self.cursor.read_var()?;
            if parent_info == 1 {
                self.cursor.read_string()?;
            } else {
                parent = ParentRef::Type(self.id()?);
            }
            if info & HAS_PARENT_SUB != 0 {
                self.cursor.read_string()?;
            }
        }
        let kind = info & 0b1111;
        let len = self.content(kind)?;
        self.record(StructRef {
            id,
            len,
            kind: StructKind::Item {
                is_type: kind == CONTENT_TYPE,
                is_text: kind == CONTENT_STRING,
                parent,
            },
        });
        Ok(len)
    }

    fn record(&mut self, structure: StructRef) {
        if let Some(structs) = self.structs.as_deref_mut() {
            structs.push(structure);
        }
    }

    fn id(&mut self) -> Result<ID, LimitError> {
        let client = client_id(&mut self.cursor)?;
        let clock = read_clock(&mut self.cursor)?;
        Ok(ID::new(ClientID::new(client), clock))
    }

    /// An item's content, as `ItemContent::decode` reads it; returns its length in ids
    /// (`ItemContent::len`: UTF-16 code units for strings).
    fn content(&mut self, kind: u8) -> Result<u32, LimitError> {
        let len = match kind {
            CONTENT_DELETED => self.cursor.read_var()?,
            CONTENT_JSON => {
                // Legacy JSON content (only Yjs before v13 wrote it) does not survive a round
                // trip through yrs 0.28: it reads one string more than it writes, so a stored
                // snapshot holding such an item no longer decodes and the whole document would
                // fail to load; merging it as a pending struct even panicked (both found by
                // fuzzing). No current client sends it: refuse it.
                return Err(LimitError::UnknownTag {
                    what: "content (legacy JSON content is not supported)",
                    tag: kind,
                });
            }
            CONTENT_BINARY => {
                self.cursor.read_buf()?;
                1
            }
            CONTENT_STRING => {
                let text = self.cursor.read_string()?;
                u32::try_from(text.encode_utf16().count()).unwrap_or(u32::MAX)
            }
            CONTENT_EMBED => {
                self.json()?;
                1
            }
            CONTENT_FORMAT => {
                self.cursor.read_string()?;
                self.json()?;
                1
            }
            CONTENT_TYPE => {
                let type_ref = self.cursor.read_u8()?;
                if type_ref == TYPE_XML_ELEMENT {
                    self.cursor.read_string()?;
                } else if !KNOWN_TYPES.contains(&type_ref) {
                    return Err(LimitError::UnknownTag {
                        what: "type",
                        tag: type_ref,
                    });
                }
                1
            }
            CONTENT_ANY => {
                let values = self.count(1)?;
                for _ in 0..values {
                    self.any()?;
                }
                u32::try_from(values).unwrap_or(u32::MAX)
            }
            CONTENT_DOC => {
                self.cursor.read_string()?; // guid
                self.any()?; // options
                1
            }
            tag => {
                return Err(LimitError::UnknownTag {
                    what: "content",
                    tag,
                });
            }
        };
        Ok(len)
    }

    /// One `Any` value (`Any::decode`), with an explicit stack of open arrays and maps.
    fn any(&mut self) -> Result<(), LimitError> {
        let mut open: Vec<Open> = Vec::new();
        let mut first = true;
        loop {
            if !first {
                let Some(top) = open.last_mut() else {
                    return Ok(());
                };
                if top.left == 0 {
                    open.pop();
                    continue;
                }
                top.left -= 1;
                if top.is_map {
                    self.cursor.read_string()?;
                }
            }
            first = false;
            self.tally(false)?;
            let tag = self.cursor.read_u8()?;
            match tag {
                127 | 126 | 121 | 120 => {}
                125 => skip_var_i64(&mut self.cursor)?,
                124 => {
                    self.cursor.read_f32()?;
                }
                123 => {
                    self.cursor.read_f64()?;
                }
                122 => {
                    self.cursor.read_i64()?;
                }
                119 => {
                    self.cursor.read_string()?;
                }
                116 => {
                    self.cursor.read_buf()?;
                }
                117 | 118 => {
                    let is_map = tag == 118;
                    // A map entry is a key (at least its length byte) and a value.
                    let left = self.count(if is_map { 2 } else { 1 })?;
                    self.enter(open.len() + 1)?;
                    open.push(Open { left, is_map });
                }
                tag => return Err(LimitError::UnknownTag { what: "any", tag }),
            }
        }
    }

    /// Embed and format values: a JSON string serde_json will parse into an `Any`.
    fn json(&mut self) -> Result<(), LimitError> {
        self.tally(false)?;
        let text = self.cursor.read_string()?;
        let depth = json_depth(text);
        self.enter(depth)
    }

    fn enter(&mut self, depth: usize) -> Result<(), LimitError> {
        if depth > self.limits.max_depth {
            return Err(LimitError::TooDeep {
                max: self.limits.max_depth,
            });
        }
        self.summary.depth = self.summary.depth.max(depth);
        Ok(())
    }

    /// The delete set, as `IdSet::decode` reads it.
    fn delete_set(&mut self) -> Result<(), LimitError> {
        // A client id and a range count take at least one byte each.
        let clients = self.count(2)?;
        for _ in 0..clients {
            client_id(&mut self.cursor)?;
            // A range is a clock and a length.
            let ranges = self.count(2)?;
            for _ in 0..ranges {
                self.tally(false)?;
                let clock = read_clock(&mut self.cursor)?;
                let len: u32 = self.cursor.read_var()?;
                end_of_range(clock, len)?;
            }
        }
        Ok(())
    }
}

/// The deepest nesting of arrays and objects in a JSON text, counted without parsing it
/// (brackets inside strings do not count). Invalid JSON is left to serde_json to refuse.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"{"a":[1,{"b":"[[[["}]}"#), 3);
        assert_eq!(json_depth(r#""\"[""#), 0);
        assert_eq!(json_depth(&"[".repeat(500)), 500);
    }

    #[test]
    fn counts_beyond_the_input_are_refused() {
        // 2^32-1 clients in a 6-byte update.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f, 0];
        assert!(matches!(
            check_update_v1(&bytes, &UpdateLimits::default()),
            Err(LimitError::CountExceedsInput { .. })
        ));
        assert!(matches!(
            check_state_vector_v1(&[0xff, 0xff, 0x03, 1, 1]),
            Err(LimitError::CountExceedsInput { .. })
        ));
        assert!(matches!(
            check_awareness_v1(&[0x80, 0x01, 1, 1, 0]),
            Err(LimitError::CountExceedsInput { .. })
        ));
    }
}
