//! An uploaded Markdown or plain-text file (the first byte picks which), through the same
//! extraction (and chunking) as the server runs.
#![no_main]

use lectern_library::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    let format = if selector % 2 == 0 {
        Format::Markdown
    } else {
        Format::Text
    };
    lectern_fuzz::extract(format, bytes);
});
