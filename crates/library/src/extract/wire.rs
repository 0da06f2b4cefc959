//! A byte encoding of an extraction's outcome, so extraction can run in another process.
//!
//! Sans-IO: [`encode`] turns `Result<Extracted, ExtractError>` into bytes, [`decode`] turns
//! them back. The decoder trusts nothing: every length is checked against the bytes that
//! are actually there before anything is allocated, so a garbled or hostile reply costs at
//! most its own size. The caller bounds that size (it reads the reply with a cap).
//!
//! Layout (integers little-endian):
//! - `LXW2` magic (the parent and the child are the same binary, so the version only
//!   guards against a stale worker named by `--extract-worker`);
//! - `0`, then a `u32` section count and per section: `u32` page (0: none), `u32` line
//!   (0: none), `u32` heading length + 1 (0: none) and the heading, `u32` text length and
//!   the text;
//! - or `1`, an error kind byte and its fields (strings as `u32` length + UTF-8; numbers
//!   as `u64`).

use std::time::Duration;

use super::docx::ZIP_KINDS;
use crate::{ExtractError, Extracted, Section};

const MAGIC: &[u8; 4] = b"LXW2";

/// Why bytes are not an encoded outcome.
#[derive(Debug, thiserror::Error)]
#[error("malformed extraction reply: {0}")]
pub struct WireError(&'static str);

/// Encodes an extraction's outcome.
pub fn encode(outcome: &Result<Extracted, ExtractError>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    match outcome {
        Ok(extracted) => {
            out.push(0);
            put_u32(&mut out, len32(extracted.sections.len()));
            for section in &extracted.sections {
                put_u32(&mut out, section.page.unwrap_or(0));
                put_u32(&mut out, section.line.unwrap_or(0));
                match &section.heading {
                    Some(heading) => {
                        put_u32(&mut out, len32(heading.len()).saturating_add(1));
                        out.extend_from_slice(heading.as_bytes());
                    }
                    None => put_u32(&mut out, 0),
                }
                put_str(&mut out, &section.text);
            }
        }
        Err(error) => {
            out.push(1);
            encode_error(&mut out, error);
        }
    }
    out
}

fn encode_error(out: &mut Vec<u8>, error: &ExtractError) {
    match error {
        ExtractError::Empty => out.push(0),
        ExtractError::Unsupported { detected } => {
            out.push(1);
            put_str(out, detected);
        }
        ExtractError::Encrypted => out.push(2),
        ExtractError::Malformed(reason) => {
            out.push(3);
            put_str(out, reason);
        }
        ExtractError::NotUtf8 { offset } => {
            out.push(4);
            put_u64(out, *offset as u64);
        }
        ExtractError::NoText => out.push(5),
        ExtractError::TooLarge(reason) => {
            out.push(6);
            put_str(out, reason);
        }
        ExtractError::Timeout(budget) => {
            out.push(7);
            put_u64(out, millis(*budget));
        }
        ExtractError::Crashed(reason) => {
            out.push(8);
            put_str(out, reason);
        }
        ExtractError::OutOfMemory { limit_bytes } => {
            out.push(9);
            put_u64(out, *limit_bytes);
        }
        ExtractError::CpuTime(budget) => {
            out.push(10);
            put_u64(out, millis(*budget));
        }
        ExtractError::TooMuchText { limit_bytes } => {
            out.push(11);
            put_u64(out, *limit_bytes);
        }
    }
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<Result<Extracted, ExtractError>, WireError> {
    let mut input = Reader(bytes);
    if input.take(MAGIC.len())? != MAGIC {
        return Err(WireError("bad magic"));
    }
    let outcome = match input.u8()? {
        0 => {
            let count = input.u32()? as usize;
            // Each section takes at least 16 bytes: a count beyond that is a lie.
            if count > input.0.len() / 16 {
                return Err(WireError("section count exceeds the reply"));
            }
            let mut sections = Vec::with_capacity(count);
            for _ in 0..count {
                let page = input.u32()?;
                let line = input.u32()?;
                let heading = match input.u32()? {
                    0 => None,
                    len => Some(input.string(len as usize - 1)?),
                };
                let len = input.u32()? as usize;
                let text = input.string(len)?;
                sections.push(Section {
                    text,
                    page: (page != 0).then_some(page),
                    heading,
                    line: (line != 0).then_some(line),
                });
            }
            Ok(Extracted { sections })
        }
        1 => Err(decode_error(&mut input)?),
        _ => return Err(WireError("bad outcome tag")),
    };
    if !input.0.is_empty() {
        return Err(WireError("trailing bytes"));
    }
    Ok(outcome)
}

fn decode_error(input: &mut Reader<'_>) -> Result<ExtractError, WireError> {
    Ok(match input.u8()? {
        0 => ExtractError::Empty,
        1 => {
            let detected = input.str_field()?;
            ExtractError::Unsupported {
                detected: ZIP_KINDS
                    .into_iter()
                    .find(|kind| *kind == detected)
                    .unwrap_or("an unsupported file"),
            }
        }
        2 => ExtractError::Encrypted,
        3 => ExtractError::Malformed(input.str_field()?),
        4 => ExtractError::NotUtf8 {
            offset: usize::try_from(input.u64()?).unwrap_or(usize::MAX),
        },
        5 => ExtractError::NoText,
        6 => ExtractError::TooLarge(input.str_field()?),
        7 => ExtractError::Timeout(Duration::from_millis(input.u64()?)),
        8 => ExtractError::Crashed(input.str_field()?),
        9 => ExtractError::OutOfMemory {
            limit_bytes: input.u64()?,
        },
        10 => ExtractError::CpuTime(Duration::from_millis(input.u64()?)),
        11 => ExtractError::TooMuchText {
            limit_bytes: input.u64()?,
        },
        _ => return Err(WireError("unknown error kind")),
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Lengths above 4 GiB cannot occur: the reply is capped far below that.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_u32(out, len32(text.len()));
    out.extend_from_slice(text.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.0.len() {
            return Err(WireError("truncated"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }

    fn string(&mut self, len: usize) -> Result<String, WireError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError("text is not UTF-8"))
    }

    fn str_field(&mut self) -> Result<String, WireError> {
        let len = self.u32()? as usize;
        self.string(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        let extracted = Extracted {
            sections: vec![
                Section {
                    text: "Page one".into(),
                    page: Some(1),
                    heading: None,
                    line: None,
                },
                Section {
                    text: "Body \u{e9}".into(),
                    page: None,
                    heading: Some("A > B".into()),
                    line: Some(12),
                },
                Section {
                    text: "x".into(),
                    page: None,
                    heading: Some(String::new()),
                    line: Some(1),
                },
            ],
        };
        let decoded = decode(&encode(&Ok(extracted.clone()))).expect("decode");
        assert_eq!(decoded.expect("ok"), extracted);

        let errors = [
            ExtractError::Empty,
            ExtractError::Unsupported {
                detected: ZIP_KINDS[0],
            },
            ExtractError::Encrypted,
            ExtractError::Malformed("PDF: x".into()),
            ExtractError::NotUtf8 { offset: 7 },
            ExtractError::NoText,
            ExtractError::TooLarge("big".into()),
            ExtractError::Timeout(Duration::from_secs(3)),
            ExtractError::Crashed("SIGSEGV".into()),
            ExtractError::OutOfMemory {
                limit_bytes: 1 << 30,
            },
            ExtractError::CpuTime(Duration::from_secs(9)),
            ExtractError::TooMuchText { limit_bytes: 5 },
        ];
        for error in errors {
            let expected = error.to_string();
            let decoded = decode(&encode(&Err(error))).expect("decode");
            assert_eq!(decoded.expect_err("error").to_string(), expected);
        }
    }

    #[test]
    fn garbage_and_lies_are_refused_without_allocating() {
        assert!(decode(b"").is_err());
        assert!(decode(b"LXW2\x02").is_err());
        // Claims four billion sections in nine bytes.
        assert!(decode(b"LXW2\x00\xff\xff\xff\xff").is_err());
        // A section whose text length runs past the end.
        let mut lie = b"LXW2\x00\x01\x00\x00\x00".to_vec();
        lie.extend_from_slice(&[0; 12]);
        lie.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&lie).is_err());
        let mut trailing = encode(&Err(ExtractError::NoText));
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }
}
