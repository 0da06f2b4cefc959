//! Edit markers: how a receiver learns which edits a frame carries without decoding it.
//!
//! Every edit inserts `|c<client>s<seq>|` into a `Y.Text`. Yjs/yrs v1 updates store string
//! content as plain UTF-8, so the marker appears verbatim in every frame that carries the
//! edit, whether the server relays it alone, merges it with other updates, or ships it inside
//! a sync step 2. Inserts of one client are appended to its own text, so items are never
//! split and a marker is never cut in two; neighbouring markers may be concatenated
//! (`|c1s4||c1s5|`), which the scanner handles. Anything that is not a well-formed marker
//! (binary bytes that happen to contain `|`) is skipped; callers also range-check the ids.

use std::fmt::Write as _;

/// Appends the marker of edit `seq` of `client` to `out`.
pub fn write(out: &mut String, client: u32, seq: u32) {
    // Writing into a String cannot fail.
    let _ = write!(out, "|c{client}s{seq}|");
}

/// Calls `found(client, seq)` for every well-formed marker in `buf`, in order.
pub fn scan(buf: &[u8], mut found: impl FnMut(u32, u32)) {
    for at in memchr::memchr_iter(b'|', buf) {
        if let Some((client, seq)) = parse_at(&buf[at..]) {
            found(client, seq);
        }
    }
}

/// Parses a marker starting at `buf[0] == b'|'`.
fn parse_at(buf: &[u8]) -> Option<(u32, u32)> {
    let rest = buf.strip_prefix(b"|c")?;
    let (client, rest) = parse_u32(rest)?;
    let rest = rest.strip_prefix(b"s")?;
    let (seq, rest) = parse_u32(rest)?;
    rest.starts_with(b"|").then_some((client, seq))
}

/// A decimal `u32` of 1..=10 digits at the start of `buf`, and the bytes after it.
fn parse_u32(buf: &[u8]) -> Option<(u32, &[u8])> {
    let digits = buf
        .iter()
        .take(11)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 10 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in &buf[..digits] {
        value = value * 10 + u64::from(b - b'0');
    }
    Some((u32::try_from(value).ok()?, &buf[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8]) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        scan(buf, |c, s| v.push((c, s)));
        v
    }

    #[test]
    fn round_trip() {
        let mut s = String::new();
        write(&mut s, 17, 4_000_000_000);
        assert_eq!(s, "|c17s4000000000|");
        assert_eq!(all(s.as_bytes()), [(17, 4_000_000_000)]);
    }

    #[test]
    fn concatenated_markers_are_all_found() {
        assert_eq!(all(b"|c1s4||c1s5||c22s0|"), [(1, 4), (1, 5), (22, 0)]);
    }

    #[test]
    fn markers_inside_binary_noise() {
        let mut frame = vec![0x00, b'|', 0x7c, b'c', 0xff, b'|', b'c', b'9'];
        frame.extend_from_slice(b"\x05|c3s7|\x00|c|cs1|c1s|c4294967296s1|");
        assert_eq!(all(&frame), [(3, 7)]);
    }

    #[test]
    fn overlong_numbers_are_rejected() {
        assert_eq!(all(b"|c12345678901s1|"), []);
        assert_eq!(all(b"|c1s99999999999|"), []);
    }

    #[test]
    fn markers_survive_a_yrs_update_and_a_merge() {
        use yrs::{Doc, ReadTxn, StateVector, Text, Transact};
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        let mut updates = Vec::new();
        for seq in 0..3 {
            let mut m = String::new();
            write(&mut m, 5, seq);
            let mut txn = doc.transact_mut();
            text.push(&mut txn, &m);
            updates.push(txn.encode_update_v1());
        }
        assert_eq!(all(&updates[1]), [(5, 1)]);
        let merged = yrs::merge_updates_v1(&updates).expect("merge");
        assert_eq!(all(&merged), [(5, 0), (5, 1), (5, 2)]);
        let state = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        assert_eq!(all(&state), [(5, 0), (5, 1), (5, 2)]);
    }
}
