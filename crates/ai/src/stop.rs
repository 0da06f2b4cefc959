//! Stop sequences over streamed text, for every backend.
//!
//! A stop sequence can arrive split across tokens (`"\n\nQ"` then `"uestion:"`), so text
//! that could be the start of a stop sequence is held back until the next piece shows
//! whether it is one. Nothing that turns out to be part of a stop sequence is ever
//! released: it would already be in the shared document.

/// Filters a stream of text pieces through a request's stop sequences.
#[derive(Debug, Default)]
pub(crate) struct StopFilter {
    /// The non-empty stop sequences.
    stops: Vec<String>,
    /// Text received but not released: a suffix that may start a stop sequence.
    held: String,
    /// A stop sequence was found; everything from it on is discarded.
    stopped: bool,
}

impl StopFilter {
    /// A filter for `stops`; empty strings are ignored (they would stop at once).
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Whether a stop sequence has been found: the answer is over.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds the next piece; returns the text that is now certain not to belong to a stop
    /// sequence (possibly empty). After a stop sequence, returns the text before it and
    /// then nothing more.
    pub(crate) fn push(&mut self, piece: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.held.push_str(piece);
        // The stop sequence that is complete first (the smallest end, then the longest)
        // wins: a stream delivered in smaller pieces would have ended there, so the answer
        // does not depend on how the text was cut.
        let first = self
            .stops
            .iter()
            .filter_map(|stop| {
                let start = self.held.find(stop.as_str())?;
                Some((start + stop.len(), start))
            })
            .min();
        if let Some((_, start)) = first {
            self.stopped = true;
            let mut released = std::mem::take(&mut self.held);
            released.truncate(start);
            return released;
        }
        let keep = self
            .stops
            .iter()
            .map(|stop| partial_suffix(&self.held, stop))
            .max()
            .unwrap_or(0);
        let held = self.held.split_off(self.held.len() - keep);
        std::mem::replace(&mut self.held, held)
    }

    /// The text still held at the end of a stream that stopped for another reason: it was
    /// not the start of a stop sequence after all.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (cut on a
/// character boundary of both, since both are whole UTF-8).
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|&len| stop.is_char_boundary(len))
        .find(|&len| text.ends_with(&stop[..len]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut filter = StopFilter::new(&stops);
        let mut out: Vec<String> = pieces.iter().map(|p| filter.push(p)).collect();
        let stopped = filter.stopped();
        if !stopped {
            out.push(filter.finish());
        }
        (out, stopped)
    }

    #[test]
    fn a_stop_split_across_pieces_is_never_released() {
        let (out, stopped) = run(&["\nQuestion:"], &["Paris.", "\nQu", "est", "ion: next"]);
        assert!(stopped);
        assert_eq!(out, ["Paris.", "", "", ""]);
    }

    #[test]
    fn held_text_is_released_when_it_turns_out_not_to_be_a_stop() {
        let (out, stopped) = run(&["END"], &["The E", "N", "d of it"]);
        assert!(!stopped);
        assert_eq!(out.concat(), "The ENd of it");
        assert_eq!(out[0], "The ", "the `E` waits");
        assert_eq!(out[1], "", "`EN` still could be `END`");
    }

    #[test]
    fn text_before_the_stop_in_the_same_piece_is_kept_and_after_it_dropped() {
        let (out, stopped) = run(&["###"], &["one two ### three", "four"]);
        assert!(stopped);
        assert_eq!(out, ["one two ", ""]);
    }

    #[test]
    fn the_stop_completed_first_wins_however_the_text_is_cut() {
        for pieces in [
            &["xab", "cd"][..],
            &["xabc", "d"],
            &["x", "a", "b", "c", "d"],
            &["xabcd"],
        ] {
            let (out, stopped) = run(&["abcd", "bc"], pieces);
            assert!(stopped);
            assert_eq!(out.concat(), "xa", "{pieces:?}");
        }
    }

    #[test]
    fn multibyte_stops_and_text_cut_on_character_boundaries() {
        let (out, stopped) = run(&["—fin"], &["café —", "fi", "n!"]);
        assert!(stopped);
        assert_eq!(out.concat(), "café ");
        let (out, stopped) = run(&["éé"], &["aé", "b"]);
        assert!(!stopped);
        assert_eq!(out, ["a", "éb", ""]);
    }

    #[test]
    fn no_or_empty_stops_release_everything_at_once() {
        let (out, stopped) = run(&[""], &["a", "b"]);
        assert!(!stopped);
        assert_eq!(out, ["a", "b", ""]);
    }
}
