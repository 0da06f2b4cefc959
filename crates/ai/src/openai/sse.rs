//! A sans-IO Server-Sent Events parser: bytes in, events out.
//!
//! It follows the WHATWG event-stream rules that matter for an LLM token stream, because
//! servers differ in exactly these details: lines end in `\n`, `\r\n` or a lone `\r`; a field
//! value may or may not start with one space (`data:x` and `data: x` are the same); several
//! `data` lines of one event are joined with `\n`; lines starting with `:` are comments
//! (keep-alives); a blank line dispatches the event. Bytes are buffered until a line is
//! complete, so a chunk boundary anywhere — even inside a multi-byte UTF-8 character —
//! changes nothing.
//!
//! One deliberate extension: llama.cpp's server reports failures as an `error: {...}` line,
//! which the standard would ignore as an unknown field; here it becomes an event of type
//! `error`, the same as `event: error` + `data: {...}`, so callers handle one shape.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `"message"` when the server sent none.
    pub event: String,
    /// The `data:` lines joined with `\n` (no trailing newline).
    pub data: String,
}

/// The incremental parser. Feed it with [`push`](Self::push) as bytes arrive and drain it
/// with [`next_event`](Self::next_event); call [`finish`](Self::finish) at end of input.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Received bytes not yet parsed into lines; `start` bytes at the front are consumed.
    /// Kept as bytes (not a `String`) so a UTF-8 character split across chunks survives.
    buf: Vec<u8>,
    /// How much of `buf` has been consumed; compacted lazily so parsing stays linear.
    start: usize,
    /// The previous line ended with `\r`: a `\n` right after it belongs to the same line end.
    skip_lf: bool,
    /// The byte-order mark check is done (it may only appear at the very start).
    bom_checked: bool,
    /// The event type of the event being assembled.
    event: Option<String>,
    /// The data of the event being assembled; `None` until a `data` line arrives, because
    /// an event without data is not dispatched.
    data: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Nothing is parsed until [`next_event`](Self::next_event).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            // Everything was consumed: reuse the allocation without moving bytes.
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            // Drop the consumed prefix only when it dominates, so compaction is amortised.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Marks the end of input: a last line without a line ending and a last event without a
    /// blank line are dispatched rather than lost. The standard discards them, but some
    /// servers close the connection right after their final `data:` line, and losing the
    /// final usage chunk or `[DONE]` would turn a complete answer into an error.
    pub fn finish(&mut self) {
        self.push(b"\n\n");
    }

    /// The next complete event, if the bytes pushed so far contain one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        if !self.bom_checked {
            let rest = &self.buf[self.start..];
            if rest.len() < 3 && b"\xEF\xBB\xBF".starts_with(rest) {
                // Could still be a BOM; wait for more bytes.
                return None;
            }
            if rest.starts_with(b"\xEF\xBB\xBF") {
                self.start += 3;
            }
            self.bom_checked = true;
        }
        loop {
            if self.skip_lf && self.start < self.buf.len() {
                if self.buf[self.start] == b'\n' {
                    self.start += 1;
                }
                self.skip_lf = false;
            }
            let rest = &self.buf[self.start..];
            let end = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
            self.skip_lf = rest[end] == b'\r';
            let line_start = self.start;
            self.start += end + 1;
            if let Some(event) = self.line(line_start, line_start + end) {
                return Some(event);
            }
        }
    }

    /// Handles one complete line (`buf[from..to]`, without its ending); returns an event when
    /// the line is blank and an event is pending.
    fn line(&mut self, from: usize, to: usize) -> Option<SseEvent> {
        if from == to {
            return self.dispatch();
        }
        let line = &self.buf[from..to];
        if line[0] == b':' {
            return None; // A comment, typically a keep-alive.
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // Lossy, as the standard says: one bad byte must not lose the whole stream.
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => self.data = Some(value.into_owned()),
            },
            b"event" => self.event = Some(value.into_owned()),
            b"error" => {
                self.event = Some("error".to_owned());
                self.data = Some(value.into_owned());
            }
            // `id` and `retry` drive browser reconnection, which a POST stream never does.
            _ => {}
        }
        None
    }

    /// Ends the pending event at a blank line.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let data = self.data.take()?;
        Some(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".to_owned()),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parser: &mut SseParser) -> Vec<SseEvent> {
        std::iter::from_fn(|| parser.next_event()).collect()
    }

    fn parse(input: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        parser.push(input);
        all(&mut parser)
    }

    fn msg(data: &str) -> SseEvent {
        SseEvent {
            event: "message".to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn data_with_and_without_space() {
        assert_eq!(
            parse(b"data: a\n\ndata:b\n\ndata:  c\n\n"),
            vec![msg("a"), msg("b"), msg(" c")]
        );
    }

    #[test]
    fn line_endings_crlf_cr_lf() {
        assert_eq!(
            parse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"),
            vec![msg("a"), msg("b"), msg("c")]
        );
    }

    #[test]
    fn multi_line_data_is_joined_with_newline() {
        assert_eq!(
            parse(b"data: {\"a\":\ndata: 1}\n\n"),
            vec![msg("{\"a\":\n1}")]
        );
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        assert_eq!(
            parse(b": keep-alive\n\nid: 7\nretry: 10\nfoo\ndata: x\n: inside\n\n"),
            vec![msg("x")]
        );
    }

    #[test]
    fn event_type_and_llama_cpp_error_field() {
        let error = |data: &str| SseEvent {
            event: "error".to_owned(),
            data: data.to_owned(),
        };
        assert_eq!(
            parse(b"event: error\ndata: {}\n\nerror: {\"code\":500}\n\n"),
            vec![error("{}"), error("{\"code\":500}")]
        );
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert_eq!(parse(b"event: ping\n\ndata: x\n\n"), vec![msg("x")]);
    }

    #[test]
    fn incomplete_event_waits_for_blank_line_or_finish() {
        let mut parser = SseParser::new();
        parser.push(b"data: [DONE]");
        assert_eq!(all(&mut parser), vec![]);
        parser.push(b"\n");
        assert_eq!(all(&mut parser), vec![]);
        parser.finish();
        assert_eq!(all(&mut parser), vec![msg("[DONE]")]);
    }

    #[test]
    fn leading_bom_is_skipped() {
        let mut parser = SseParser::new();
        parser.push(b"\xEF\xBB");
        assert_eq!(all(&mut parser), vec![]);
        parser.push(b"\xBFdata: x\n\n");
        assert_eq!(all(&mut parser), vec![msg("x")]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(parse(b"data: a\xFFb\n\n"), vec![msg("a\u{FFFD}b")]);
    }

    /// Every way of cutting the input in two (and byte by byte) gives the same events as
    /// parsing it whole — including cuts inside `\r\n` and inside multi-byte characters.
    #[test]
    fn any_chunk_boundary_gives_the_same_events() {
        let input = "\u{FEFF}: hi\r\nevent: message\r\ndata: {\"c\":\"é漢🙂\"}\r\n\r\n\
                     data:a\rdata:b\r\rdata: [DONE]\n\n"
            .as_bytes();
        let whole = parse(input);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "{\"c\":\"é漢🙂\"}");
        for cut in 0..=input.len() {
            let mut parser = SseParser::new();
            parser.push(&input[..cut]);
            let mut events = all(&mut parser);
            parser.push(&input[cut..]);
            events.extend(all(&mut parser));
            assert_eq!(events, whole, "cut at {cut}");
        }
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for byte in input {
            parser.push(std::slice::from_ref(byte));
            events.extend(all(&mut parser));
        }
        assert_eq!(events, whole);
    }

    #[test]
    fn buffer_is_compacted_on_long_streams() {
        let mut parser = SseParser::new();
        for _ in 0..10_000 {
            parser.push(b"data: {\"choices\":[]}\n\n");
            assert_eq!(all(&mut parser).len(), 1);
        }
        assert!(
            parser.buf.len() < 8192,
            "buffer grew to {}",
            parser.buf.len()
        );
    }
}
