//! Chunking: sizes, overlap, sections, character boundaries, determinism.

use lectern_library::{Chunk, ChunkConfig, Extracted, Section, chunk};

fn section(text: &str, page: Option<u32>, heading: Option<&str>) -> Section {
    Section {
        text: text.to_owned(),
        page,
        heading: heading.map(str::to_owned),
        line: None,
    }
}

fn sentences(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix} sentence number {i} says something."))
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_sizes(chunks: &[Chunk], target: usize) {
    for c in chunks {
        assert!(
            c.text.chars().count() <= target,
            "chunk of {} chars: {:?}",
            c.text.chars().count(),
            c.text
        );
        assert!(!c.text.trim().is_empty());
    }
}

#[test]
fn short_section_is_one_chunk() {
    let doc = Extracted {
        sections: vec![section(
            "  Hello\t  world.\n\n\n Second   para. ",
            Some(2),
            None,
        )],
    };
    let chunks = chunk(&doc, &ChunkConfig::default());
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "Hello world.\n\nSecond para.");
    assert_eq!(chunks[0].page, Some(2));
}

#[test]
fn consecutive_chunks_overlap() {
    let doc = Extracted {
        sections: vec![section(&sentences("Alpha", 40), None, Some("A"))],
    };
    let config = ChunkConfig {
        target_chars: 200,
        overlap_chars: 50,
    };
    let chunks = chunk(&doc, &config);
    assert!(chunks.len() > 5);
    check_sizes(&chunks, 200);
    for pair in chunks.windows(2) {
        let (prev, next) = (&pair[0].text, &pair[1].text);
        // The longest prefix of `next` that `prev` ends with is the overlap.
        let carried = (1..=next.len().min(60))
            .filter(|&n| next.is_char_boundary(n) && prev.ends_with(&next[..n]))
            .max()
            .unwrap_or(0);
        assert!(
            (20..=50).contains(&carried),
            "overlap {carried}: {prev:?} -> {next:?}"
        );
        // It starts at a word.
        let before = &prev[..prev.len() - carried];
        assert!(before.ends_with(char::is_whitespace), "{before:?}");
    }
}

#[test]
fn no_overlap_when_configured_off() {
    let text = sentences("Beta", 30);
    let doc = Extracted {
        sections: vec![section(&text, None, None)],
    };
    let chunks = chunk(
        &doc,
        &ChunkConfig {
            target_chars: 150,
            overlap_chars: 0,
        },
    );
    let joined = chunks
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(joined, text);
}

#[test]
fn chunks_never_cross_sections() {
    let doc = Extracted {
        sections: vec![
            section(&sentences("Apple", 25), Some(1), None),
            section("Tiny middle section.", Some(2), None),
            section(&sentences("Pear", 25), Some(3), None),
        ],
    };
    let chunks = chunk(
        &doc,
        &ChunkConfig {
            target_chars: 180,
            overlap_chars: 60,
        },
    );
    check_sizes(&chunks, 180);
    for c in &chunks {
        let expected = match c.page {
            Some(1) => "Apple",
            Some(2) => "Tiny",
            Some(3) => "Pear",
            other => panic!("unexpected page {other:?}"),
        };
        for word in ["Apple", "Tiny", "Pear"] {
            assert_eq!(
                c.text.contains(word),
                word == expected,
                "{word} in page {:?}: {:?}",
                c.page,
                c.text
            );
        }
    }
    // The middle section is its own chunk, without overlap from page 1.
    let middle: Vec<&Chunk> = chunks.iter().filter(|c| c.page == Some(2)).collect();
    assert_eq!(middle.len(), 1);
    assert_eq!(middle[0].text, "Tiny middle section.");
    let ordinals: Vec<u32> = chunks.iter().map(|c| c.ordinal).collect();
    assert_eq!(ordinals, (0..chunks.len() as u32).collect::<Vec<_>>());
}

#[test]
fn multibyte_text_is_cut_on_char_boundaries() {
    let cjk = "細胞は生命の基本単位である。ミトコンドリアはエネルギーを作る。".repeat(20);
    let emoji = "🧬🔬🌱".repeat(100);
    let accented = "élève café naïve Ærøskøbing straße ".repeat(30);
    let doc = Extracted {
        sections: vec![
            section(&cjk, Some(1), None),
            section(&emoji, Some(2), None),
            section(&accented, Some(3), None),
        ],
    };
    for target in [16, 17, 33, 100] {
        let config = ChunkConfig {
            target_chars: target,
            overlap_chars: target / 3,
        };
        let chunks = chunk(&doc, &config);
        check_sizes(&chunks, target);
        // Every character of the input survives somewhere (String guarantees validity).
        for (page, source) in [(1, &cjk), (2, &emoji)] {
            let joined: String = chunks
                .iter()
                .filter(|c| c.page == Some(page))
                .map(|c| c.text.as_str())
                .collect();
            for ch in source.chars() {
                assert!(joined.contains(ch), "lost {ch:?} at target {target}");
            }
        }
    }
}

#[test]
fn a_giant_word_is_split() {
    let url = format!("https://example.org/{}", "x".repeat(2000));
    let doc = Extracted {
        sections: vec![section(&format!("See {url} now."), None, None)],
    };
    let chunks = chunk(&doc, &ChunkConfig::default());
    check_sizes(&chunks, 800);
    assert!(chunks.len() >= 3);
}

#[test]
fn chunking_is_deterministic() {
    let doc = Extracted {
        sections: vec![
            section(&sentences("Gamma", 60), None, Some("X > Y")),
            section(
                &format!("{}\n\n{}", sentences("Delta", 10), sentences("Eps", 10)),
                None,
                Some("Z"),
            ),
        ],
    };
    let config = ChunkConfig::default();
    let first = chunk(&doc, &config);
    for _ in 0..3 {
        assert_eq!(chunk(&doc, &config), first);
    }
    assert!(first.iter().all(|c| c.heading.is_some()));
}

#[test]
fn paragraphs_are_packed_whole_when_they_fit() {
    let paras: Vec<String> = (0..6).map(|i| format!("Paragraph {i} is short.")).collect();
    let doc = Extracted {
        sections: vec![section(&paras.join("\n\n"), None, None)],
    };
    let chunks = chunk(
        &doc,
        &ChunkConfig {
            target_chars: 60,
            overlap_chars: 0,
        },
    );
    for c in &chunks {
        for p in c.text.split("\n\n") {
            assert!(paras.contains(&p.to_owned()), "split paragraph {p:?}");
        }
    }
}

#[test]
fn the_recorded_overlap_is_exactly_the_repeated_text() {
    let text = format!(
        "{}\n\n{}\n\n{}",
        sentences("Alpha", 12),
        sentences("Beta", 3),
        sentences("Gamma", 15)
    );
    let doc = Extracted {
        sections: vec![section(&text, None, None)],
    };
    let chunks = chunk(
        &doc,
        &ChunkConfig {
            target_chars: 200,
            overlap_chars: 60,
        },
    );
    assert!(chunks.len() > 5);
    assert_eq!(chunks[0].overlap_chars, 0);
    let mut merged = chunks[0].text.clone();
    for pair in chunks.windows(2) {
        let (prev, next) = (&pair[0].text, &pair[1].text);
        let overlap = pair[1].overlap_chars as usize;
        assert!(overlap > 0, "{prev:?} -> {next:?}");
        let repeated: String = next.chars().take(overlap).collect();
        let rest: String = next.chars().skip(overlap).collect();
        assert!(prev.ends_with(&repeated), "{repeated:?} ends {prev:?}");
        assert!(rest.starts_with([' ', '\n']), "{rest:?}");
        merged.push_str(&rest);
    }
    // Dropping each recorded overlap gives back the text once, whole.
    assert_eq!(normalise(&merged), normalise(&text));
}

#[test]
fn chunks_know_the_lines_they_come_from() {
    // A hard-wrapped file: line n (from 1) is `source[n - 1]`.
    let source: Vec<String> = (1..=60)
        .map(|n| format!("Line{n} holds words number {n}."))
        .collect();
    let mut text = source.join("\n");
    text.insert_str(0, "\n\n");
    let doc = Extracted {
        sections: vec![Section {
            text: text.clone(),
            page: None,
            heading: None,
            line: Some(1),
        }],
    };
    let chunks = chunk(
        &doc,
        &ChunkConfig {
            target_chars: 150,
            overlap_chars: 40,
        },
    );
    assert!(chunks.len() > 10);
    for c in &chunks {
        let (first, last) = c.lines.expect("lines");
        let words: Vec<&str> = c.text.split_whitespace().collect();
        // The source starts on line 3 (two blank lines first).
        let at = |n: u32| source[(n - 3) as usize].as_str();
        assert!(first >= 3 && first <= last, "{first}..{last}");
        assert!(
            at(first).contains(words[0]),
            "{} starts {:?}",
            at(first),
            c.text
        );
        assert!(
            at(last).contains(words[words.len() - 1]),
            "{} ends {:?}",
            at(last),
            c.text
        );
    }
    // Without a known line, no range.
    let doc = Extracted {
        sections: vec![section("Some text.", Some(1), None)],
    };
    assert_eq!(chunk(&doc, &ChunkConfig::default())[0].lines, None);
}

fn normalise(text: &str) -> String {
    crate::normalise(text)
}
