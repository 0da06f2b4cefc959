//! Integration tests of `lectern-library`, one module per area (run with `--features testing`).

mod chunk;
mod extract;
mod hostile;
mod index;
mod sniff;

/// Collapses whitespace, to compare extracted text with what a fixture was given.
pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
