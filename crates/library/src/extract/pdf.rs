//! PDF: one section per page.
//!
//! `lopdf` parses the file and `pdf-extract` lays out each page's text (font encodings,
//! ToUnicode maps, spacing inferred from glyph positions), which is what makes the page
//! number of a passage available for citations. `pdf-extract` uses `unwrap` freely on
//! malformed objects, so each page runs under `catch_unwind`: one broken page costs that
//! page, not the document.

use std::panic::{AssertUnwindSafe, catch_unwind};

use lopdf::Document;

use super::Deadline;
use crate::{ExtractError, Extracted, Limits, Section};

pub(super) fn extract(
    bytes: &[u8],
    limits: &Limits,
    deadline: &Deadline,
) -> Result<Extracted, ExtractError> {
    let doc =
        Document::load_mem(bytes).map_err(|e| ExtractError::Malformed(format!("PDF: {e}")))?;
    // lopdf opens files encrypted with an empty user password by itself (owner-only
    // "permissions" encryption, common in publishers' handouts, which any viewer opens
    // without asking); what is still encrypted afterwards needs a password we do not have.
    if doc.is_encrypted() && !doc.was_encrypted() {
        return Err(ExtractError::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.len() > limits.max_pages as usize {
        return Err(ExtractError::TooLarge(format!(
            "the PDF has {} pages (at most {} are accepted)",
            pages.len(),
            limits.max_pages
        )));
    }
    let mut sections = Vec::with_capacity(pages.len());
    let mut first_failure = None;
    for &page in pages.keys() {
        deadline.check()?;
        match page_text(&doc, page) {
            Ok(text) => {
                let text = text.trim();
                if !text.is_empty() {
                    sections.push(Section {
                        text: text.to_owned(),
                        page: Some(page),
                        heading: None,
                    });
                }
            }
            Err(reason) => {
                tracing::debug!(page, %reason, "PDF page unreadable");
                first_failure.get_or_insert(format!("page {page}: {reason}"));
            }
        }
    }
    if sections.is_empty() {
        if let Some(reason) = first_failure {
            return Err(ExtractError::Malformed(format!(
                "PDF: no page could be read ({reason})"
            )));
        }
        return Err(ExtractError::NoText);
    }
    Ok(Extracted { sections })
}

fn page_text(doc: &Document, page: u32) -> Result<String, String> {
    let mut text = String::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut output = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(doc, &mut output, page)
    }));
    match result {
        Ok(Ok(())) => Ok(text),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the page could not be decoded".to_owned()),
    }
}
