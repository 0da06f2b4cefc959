//! Just enough of the Redis protocol (RESP2) for the subscriber connection: commands out,
//! replies and pushed messages in.
//!
//! Why not the `redis` crate's pub/sub connection: it does not offer `SSUBSCRIBE` (sharded
//! pub/sub) outside its cluster client, it buffers pushed messages without bound, and it
//! hides when it reconnected, which is exactly when rooms must resynchronise. A subscriber
//! reads a handful of shapes (arrays of bulk strings and integers), so reading them here
//! is short and explicit. Commands and ordinary replies still go through the `redis`
//! crate (`link.rs`).

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _};

/// Largest bulk string accepted (a document update travels in one): above the largest
/// WebSocket message a node accepts, far below what would hurt.
const MAX_BULK_BYTES: usize = 256 * 1024 * 1024;
/// Most elements in an array: pushed messages have three or four.
const MAX_ARRAY_LEN: usize = 16;
/// Longest header line (`$123\r\n`, `-ERR ...`).
const MAX_LINE_BYTES: usize = 4096;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc` (None: the null bulk string)
    Bulk(Option<Bytes>),
    /// `*2\r\n...` (None: the null array)
    Array(Option<Vec<Value>>),
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RespError {
    /// The connection failed or closed.
    #[error("connection failed")]
    Io(#[from] std::io::Error),
    /// The server sent something this reader does not accept.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
}

/// Encodes a command as a RESP array of bulk strings.
pub(crate) fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + parts.iter().map(|part| part.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one value. Arrays nest one level at most (pushed messages never nest deeper).
pub(crate) async fn read_value<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Value, RespError> {
    let line = read_line(reader).await?;
    match parse_header(&line)? {
        Header::Array(None) => Ok(Value::Array(None)),
        Header::Array(Some(len)) => {
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                let line = read_line(reader).await?;
                items.push(match parse_header(&line)? {
                    Header::Array(_) => return Err(RespError::Malformed("nested array")),
                    Header::Bulk(len) => Value::Bulk(read_bulk(reader, len).await?),
                    Header::Scalar(value) => value,
                });
            }
            Ok(Value::Array(Some(items)))
        }
        Header::Bulk(len) => Ok(Value::Bulk(read_bulk(reader, len).await?)),
        Header::Scalar(value) => Ok(value),
    }
}

enum Header {
    Array(Option<usize>),
    Bulk(Option<usize>),
    Scalar(Value),
}

fn parse_header(line: &[u8]) -> Result<Header, RespError> {
    let (&kind, rest) = line
        .split_first()
        .ok_or(RespError::Malformed("empty line"))?;
    let text = std::str::from_utf8(rest).map_err(|_| RespError::Malformed("not UTF-8"))?;
    let length = |max: usize| -> Result<Option<usize>, RespError> {
        if text == "-1" {
            return Ok(None);
        }
        match text.parse::<usize>() {
            Ok(len) if len <= max => Ok(Some(len)),
            Ok(_) => Err(RespError::Malformed("length over the limit")),
            Err(_) => Err(RespError::Malformed("bad length")),
        }
    };
    Ok(match kind {
        b'*' => Header::Array(length(MAX_ARRAY_LEN)?),
        b'$' => Header::Bulk(length(MAX_BULK_BYTES)?),
        b'+' => Header::Scalar(Value::Simple(text.to_owned())),
        b'-' => Header::Scalar(Value::Error(text.to_owned())),
        b':' => Header::Scalar(Value::Integer(
            text.parse()
                .map_err(|_| RespError::Malformed("bad integer"))?,
        )),
        _ => return Err(RespError::Malformed("unknown type")),
    })
}

/// A line without its `\r\n`.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE_BYTES as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Err(RespError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(RespError::Malformed("line not terminated"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

async fn read_bulk<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    len: Option<usize>,
) -> Result<Option<Bytes>, RespError> {
    let Some(len) = len else {
        return Ok(None);
    };
    let mut data = vec![0; len + 2];
    reader.read_exact(&mut data).await?;
    if !data.ends_with(b"\r\n") {
        return Err(RespError::Malformed("bulk string not terminated"));
    }
    data.truncate(len);
    Ok(Some(Bytes::from(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<Value, RespError> {
        let mut reader = tokio::io::BufReader::new(bytes);
        read_value(&mut reader).await
    }

    #[tokio::test]
    async fn reads_a_pushed_sharded_message() {
        let value = read(b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\na\r\nbc\r\n")
            .await
            .expect("valid");
        assert_eq!(
            value,
            Value::Array(Some(vec![
                Value::Bulk(Some(Bytes::from_static(b"smessage"))),
                Value::Bulk(Some(Bytes::from_static(b"ch"))),
                Value::Bulk(Some(Bytes::from_static(b"a\r\nbc"))),
            ]))
        );
    }

    #[tokio::test]
    async fn reads_scalars() {
        assert_eq!(
            read(b"+OK\r\n").await.ok(),
            Some(Value::Simple("OK".into()))
        );
        assert_eq!(read(b":-3\r\n").await.ok(), Some(Value::Integer(-3)));
        assert_eq!(
            read(b"-ERR unknown\r\n").await.ok(),
            Some(Value::Error("ERR unknown".into()))
        );
        assert_eq!(read(b"$-1\r\n").await.ok(), Some(Value::Bulk(None)));
    }

    #[tokio::test]
    async fn refuses_what_it_does_not_expect() {
        assert!(read(b"*2\r\n*1\r\n:1\r\n").await.is_err(), "nested array");
        assert!(read(b"*100\r\n").await.is_err(), "too long an array");
        assert!(
            read(b"$999999999999\r\n").await.is_err(),
            "too large a bulk"
        );
        assert!(
            read(b"$3\r\nabcde").await.is_err(),
            "bulk without its terminator"
        );
        assert!(read(b"$3\r\nab").await.is_err(), "truncated");
        assert!(read(b"?x\r\n").await.is_err(), "unknown type");
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(
            command(&[b"SSUBSCRIBE", b"a b"]),
            b"*2\r\n$10\r\nSSUBSCRIBE\r\n$3\r\na b\r\n"
        );
    }
}
