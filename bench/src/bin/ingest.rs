//! Ingestion benchmark: how long a 100-page PDF takes from bytes to searchable vectors on
//! this machine — the server's pipeline without HTTP and the database write: extraction
//! (`lectern_library::extract_bounded`), chunking, and embedding in batches of 32 with the
//! real all-MiniLM-L6-v2 model on one intra-op thread (what the server runs).
//!
//! `cargo run --release -p lectern-bench --bin ingest -- [PAGES] [RUNS]`; the models come
//! from `LECTERN_TEST_MODELS_DIR` or `.cache/models` (prepared on first use).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lectern_ai::embed::{Embedder, EmbedderConfig};
use lectern_library::{ChunkConfig, Format, Limits};

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pages: u32 = args.next().map_or(Ok(100), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |a| a.parse())?;

    let prepared = lectern_ai::testing::prepared();
    let embedder = Embedder::load(&prepared.files, EmbedderConfig::default())
        .context("loading the embedding model")?;
    let pdf: Arc<[u8]> = Arc::from(lectern_library::testing::large_pdf(pages));
    println!(
        "ingest: {pages}-page PDF ({} KiB), {runs} runs",
        pdf.len() / 1024
    );

    let (mut extract, mut chunking, mut embed, mut total) = (vec![], vec![], vec![], vec![]);
    let mut chunk_count = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let extracted =
            lectern_library::extract_bounded(Format::Pdf, pdf.clone(), &Limits::default())
                .context("extracting")?;
        let extracted_at = Instant::now();
        let chunks = lectern_library::chunk(&extracted, &ChunkConfig::default());
        let chunked_at = Instant::now();
        for batch in chunks.chunks(32) {
            let texts: Vec<&str> = batch.iter().map(|chunk| chunk.text.as_str()).collect();
            embedder.embed(&texts).context("embedding")?;
        }
        let done = Instant::now();
        chunk_count = chunks.len();
        extract.push(extracted_at - start);
        chunking.push(chunked_at - extracted_at);
        embed.push(done - chunked_at);
        total.push(done - start);
    }
    let total = median(total);
    println!(
        "chunks {chunk_count}; median extract {:.3} s, chunk {:.4} s, embed {:.3} s, total {:.3} s ({:.1} pages/s)",
        median(extract).as_secs_f64(),
        median(chunking).as_secs_f64(),
        median(embed).as_secs_f64(),
        total.as_secs_f64(),
        f64::from(pages) / total.as_secs_f64()
    );
    Ok(())
}
