//! Shared set-up for the fuzz targets in `fuzz_targets/`.

use std::sync::Once;
use std::time::Duration;

use lectern_library::{Format, Limits};

/// Tight bounds, so one input costs milliseconds and megabytes, never the fuzzer's budget.
pub fn extract_limits() -> Limits {
    Limits {
        max_decompressed_bytes: 4 * 1024 * 1024,
        max_pages: 32,
        max_time: Duration::from_secs(2),
        max_text_bytes: 4 * 1024 * 1024,
    }
}

/// Runs `lectern_library::extract` as the server does (after sniffing, with limits).
///
/// `extract` turns a panic inside a third-party parser into `ExtractError::Malformed`, and
/// the server relies on that. libFuzzer's panic hook would abort on such a contained panic
/// before the unwind reaches `extract`, so the default hook is put back: a panic that
/// escapes `extract` still aborts the run (libfuzzer-sys aborts on any unwind out of the
/// target), one that `extract` contains does not (its message is still printed, so a
/// crash report shows it). Stack overflows, hangs and memory blow-ups are findings either
/// way.
pub fn extract(format: Format, bytes: &[u8]) {
    static QUIET_PANICS: Once = Once::new();
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}"))));
    if let Ok(extracted) = lectern_library::extract(format, bytes, &extract_limits()) {
        // Chunking runs on every extracted text; its input is attacker-shaped too.
        let _ = lectern_library::chunk(&extracted, &lectern_library::ChunkConfig::default());
    }
}
