//! An uploaded DOCX file, through the same extraction (and chunking) as the server runs.
#![no_main]

use lectern_library::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    lectern_fuzz::extract(Format::Docx, bytes);
});
