//! Hostile inputs give their specific error, fast, and within bounded memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lectern_library::testing::{
    ZIP_BOMB_INFLATED, docx_zip_bomb, docx_zip_bomb_understated, encrypted_pdf, large_pdf, pdf,
};
use lectern_library::{ExtractError, Format, Limits, extract, extract_bounded};

/// Peak resident memory of this test process, from `/proc` (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn zip_bomb_is_too_large_without_inflating() {
    let started = Instant::now();
    let bomb = docx_zip_bomb();
    let generated = started.elapsed();
    assert!(bomb.len() < 4 << 20, "bomb is {} bytes on disk", bomb.len());
    assert!(
        generated < Duration::from_secs(5),
        "generating took {generated:?}"
    );

    let started = Instant::now();
    let err = extract(Format::Docx, &bomb, &Limits::default()).expect_err("bomb");
    assert!(matches!(err, ExtractError::TooLarge(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refusing took {:?}",
        started.elapsed()
    );
    // Inflating it would have needed a gigabyte at some point.
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < ZIP_BOMB_INFLATED / 2, "peak RSS {peak} bytes");
    }
}

#[test]
fn zip_bomb_with_understated_size_is_caught_while_inflating() {
    let bomb = docx_zip_bomb_understated(10_000);
    let limits = Limits {
        max_decompressed_bytes: 4 << 20,
        ..Limits::default()
    };
    let started = Instant::now();
    let err = extract(Format::Docx, &bomb, &limits).expect_err("bomb");
    assert!(matches!(err, ExtractError::TooLarge(_)), "{err:?}");
    // 4 MiB inflated and parsed, not 1 GiB.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < ZIP_BOMB_INFLATED / 2, "peak RSS {peak} bytes");
    }
}

#[test]
fn encrypted_pdf_is_encrypted() {
    let started = Instant::now();
    let err = extract_bounded(Format::Pdf, Arc::from(encrypted_pdf()), &Limits::default())
        .expect_err("encrypted");
    assert!(matches!(err, ExtractError::Encrypted), "{err:?}");
    assert!(err.to_string().contains("password"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn truncated_pdf_is_malformed() {
    let whole = pdf(&["Some text that will be cut off."]);
    let cut = &whole[..whole.len() / 3];
    let err = extract(Format::Pdf, cut, &Limits::default()).expect_err("truncated");
    assert!(matches!(err, ExtractError::Malformed(_)), "{err:?}");
}

#[test]
fn garbage_after_pdf_header_is_malformed() {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    let err = extract(Format::Pdf, &bytes, &Limits::default()).expect_err("garbage");
    assert!(matches!(err, ExtractError::Malformed(_)), "{err:?}");
}

/// pdf-extract panics (`expect("MediaBox")`) on a page without a media box: the panic must
/// become an error, not take the server thread down.
#[test]
fn pdf_page_that_panics_the_reader_is_malformed() {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let content = Content {
        operations: vec![Operation::new("BT", vec![]), Operation::new("ET", vec![])],
    };
    let content_id = doc.add_object(Stream::new(
        dictionary! {},
        content.encode().expect("content"),
    ));
    let page_id = doc.add_object(
        dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => content_id },
    );
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 },
        ),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("save");

    let err =
        extract_bounded(Format::Pdf, Arc::from(bytes), &Limits::default()).expect_err("panic");
    assert!(matches!(err, ExtractError::Malformed(_)), "{err:?}");
}

#[test]
fn too_many_pages_is_too_large() {
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let err = extract(Format::Pdf, &pdf(&["a", "b", "c"]), &limits).expect_err("pages");
    assert!(matches!(err, ExtractError::TooLarge(_)), "{err:?}");
}

#[test]
fn slow_extraction_times_out() {
    let bytes: Arc<[u8]> = Arc::from(large_pdf(150));
    let limits = Limits {
        max_time: Duration::from_millis(5),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = extract_bounded(Format::Pdf, bytes, &limits).expect_err("timeout");
    assert!(matches!(err, ExtractError::Timeout(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn bounded_extraction_returns_the_result() {
    let out =
        extract_bounded(Format::Pdf, Arc::from(large_pdf(5)), &Limits::default()).expect("extract");
    assert_eq!(out.sections.len(), 5);
    assert!(
        out.sections[4].text.starts_with("Page 5:"),
        "{}",
        out.sections[4].text
    );
}

#[test]
fn empty_file_is_empty() {
    for format in [Format::Pdf, Format::Docx, Format::Markdown, Format::Text] {
        assert!(matches!(
            extract(format, b"", &Limits::default()),
            Err(ExtractError::Empty)
        ));
    }
}

// Hostile PDFs that once took the whole process down (a stack overflow aborts it), left a
// thread spinning forever, or inflated a gigabyte. Each is refused quickly, in-process,
// before the third-party extractor sees it.

fn assert_refused_quickly(name: &str, bytes: &[u8], expected: fn(&ExtractError) -> bool) {
    let started = Instant::now();
    let err = extract(Format::Pdf, bytes, &Limits::default()).expect_err(name);
    assert!(expected(&err), "{name}: {err:?}");
    assert!(!err.to_string().is_empty());
    // Generous: debug builds inflate slowly; the point is "not forever".
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{name}: took {:?}",
        started.elapsed()
    );
}

#[test]
fn self_drawing_form_xobject_is_malformed_not_a_stack_overflow() {
    assert_refused_quickly(
        "self-drawing form",
        &lectern_library::testing::pdf_self_drawing_xobject(),
        |e| matches!(e, ExtractError::Malformed(m) if m.contains("draws itself")),
    );
}

#[test]
fn forms_drawing_each_other_are_malformed_not_a_stack_overflow() {
    assert_refused_quickly(
        "forms drawing each other",
        &lectern_library::testing::pdf_xobjects_drawing_each_other(),
        |e| matches!(e, ExtractError::Malformed(m) if m.contains("draws itself")),
    );
}

#[test]
fn parent_cycle_in_the_page_tree_is_malformed_not_an_endless_loop() {
    let bytes = lectern_library::testing::pdf_parent_cycle();
    assert!(bytes.len() < 1024, "{} bytes", bytes.len());
    assert_refused_quickly(
        "parent cycle",
        &bytes,
        |e| matches!(e, ExtractError::Malformed(m) if m.contains("loops")),
    );
}

#[test]
fn flate_bomb_is_too_large_without_inflating_it_into_memory() {
    let bytes = lectern_library::testing::pdf_flate_bomb();
    assert!(bytes.len() < 2 << 20, "{} bytes", bytes.len());
    assert_refused_quickly("flate bomb", &bytes, |e| {
        matches!(e, ExtractError::TooLarge(_))
    });
    if let Some(peak) = peak_rss_bytes() {
        assert!(
            peak < lectern_library::testing::FLATE_BOMB_INFLATED / 2,
            "peak RSS {peak} bytes"
        );
    }
}

#[test]
fn many_flate_streams_on_one_page_are_too_large() {
    let bytes = lectern_library::testing::pdf_many_flate_streams();
    assert_refused_quickly("many streams", &bytes, |e| {
        matches!(e, ExtractError::TooLarge(_))
    });
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 1 << 30, "peak RSS {peak} bytes");
    }
}

#[test]
fn text_larger_than_the_text_limit_is_refused() {
    let limits = Limits {
        max_text_bytes: 1000,
        ..Limits::default()
    };
    let text = "word ".repeat(400);
    for format in [Format::Text, Format::Markdown] {
        let err = extract(format, text.as_bytes(), &limits).expect_err("too much");
        assert!(matches!(err, ExtractError::TooMuchText { .. }), "{err:?}");
    }
    // Output counts too: a PDF whose text exceeds the limit.
    let err = extract(
        Format::Pdf,
        &lectern_library::testing::large_pdf(2),
        &limits,
    )
    .expect_err("too much");
    assert!(matches!(err, ExtractError::TooMuchText { .. }), "{err:?}");
}
