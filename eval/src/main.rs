//! `lectern-eval`: runs the evaluation suite against a `lectern` binary and prints the
//! figures (see `eval/README.md`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use lectern_eval::{Backend, Figures, Report, Run, ServerOptions, Suite};

/// Measures Lectern's AI on a course with an answer key, through a real server.
#[derive(Debug, Parser)]
#[command(name = "lectern-eval", version, about)]
struct Options {
    /// The `lectern` binary to run (default: the one built beside this program, so
    /// `cargo run --release -p lectern-eval` uses the release server of the same target
    /// directory once `cargo build --release -p lectern` has built it).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Run against this already running server (`http://host:port`) instead of starting
    /// one: it must allow registration; its own AI settings apply (the backend options
    /// below are ignored, give --max-tokens if it is not 512).
    #[arg(long, conflicts_with_all = ["server", "models_dir", "api_url"])]
    connect: Option<String>,
    /// The suite (its materials are in `course/` beside it).
    #[arg(long, default_value_os_t = Suite::default_path())]
    suite: PathBuf,
    /// Local models directory for the server (default: prepared afresh in the run's
    /// temporary data directory).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Whether the server prepares missing local models at start.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    prepare_models: bool,
    /// Use this OpenAI-compatible API (its root with the version segment, e.g.
    /// `http://127.0.0.1:11434/v1`) instead of the embedded model; a key, if needed, is
    /// read by the server from LECTERN_AI_API_KEY.
    #[arg(long, requires = "model")]
    api_url: Option<String>,
    /// The model name the API knows (with --api-url).
    #[arg(long)]
    model: Option<String>,
    /// Most tokens one job generates (default: the server's).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Most tokens of course passages in a chat prompt, the server's
    /// `--ai-chat-source-tokens` (default: the server's).
    #[arg(long)]
    chat_source_tokens: Option<u32>,
    /// Ask only the first N answerable questions (all off-topic ones are asked).
    #[arg(long)]
    questions: Option<usize>,
    /// Ask this many answerable questions at once (before the others) and report each
    /// one's time to first token; 0 to skip.
    #[arg(long, default_value_t = 3)]
    concurrent: usize,
    /// Skip the chat questions.
    #[arg(long)]
    skip_chats: bool,
    /// Skip the structured jobs.
    #[arg(long)]
    skip_jobs: bool,
    /// Longest one job may take, seconds.
    #[arg(long, default_value_t = 600)]
    job_timeout_secs: u64,
    /// Write the whole report (figures and every answer) as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let suite = Suite::load(&options.suite)?;
    let server = match (&options.server, &options.connect) {
        (Some(server), _) => server.clone(),
        (None, Some(url)) => PathBuf::from(url),
        (None, None) => beside_this_program("lectern")?,
    };
    let backend = match (&options.api_url, &options.model) {
        (Some(base_url), Some(model)) => Backend::OpenAi {
            base_url: base_url.clone(),
            model: model.clone(),
        },
        _ => Backend::Local,
    };
    let described = match &options.connect {
        Some(url) => format!("as configured at {url}"),
        None => backend.describe(),
    };
    let server_options = ServerOptions {
        connect: options.connect.clone(),
        binary: server.clone(),
        backend: backend.clone(),
        models_dir: options.models_dir.clone(),
        prepare_models: options.prepare_models,
        max_tokens: options.max_tokens,
        chat_source_tokens: options.chat_source_tokens,
    };
    let started = Instant::now();
    eprintln!(
        "starting {} ({}), uploading the course",
        server.display(),
        described
    );
    let mut run = Run::start(
        &suite,
        &server_options,
        Duration::from_secs(options.job_timeout_secs),
    )
    .await
    .context("setting up the run")?;
    let questions = suite.questions(options.questions);
    let outcome = measure(&mut run, &suite, questions, &options).await;
    run.stop().await;
    let (retrieval, chats, jobs, concurrent) = outcome?;
    let figures = Figures::of(Some(&retrieval), &chats, &jobs, concurrent);
    print!("{}", figures.table());
    let report = Report {
        backend: described,
        server: server.display().to_string(),
        duration_s: started.elapsed().as_secs_f64(),
        figures,
        retrieval: Some(retrieval),
        chats,
        jobs,
    };
    eprintln!("run took {:.0} s", report.duration_s);
    if let Some(path) = &options.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

type Results = (
    lectern_eval::run::Retrieval,
    Vec<lectern_eval::run::ChatResult>,
    Vec<lectern_eval::run::JobResult>,
    Vec<Option<f64>>,
);

async fn measure(
    run: &mut Run,
    suite: &Suite,
    questions: &[lectern_eval::suite::Question],
    options: &Options,
) -> anyhow::Result<Results> {
    let retrieval = run.retrieval(questions).await.context("searching")?;
    eprintln!(
        "retrieval: recall@1 {:.3}, recall@3 {:.3}",
        retrieval.recall_at_1, retrieval.recall_at_3
    );
    let mut chats = Vec::new();
    let mut jobs = Vec::new();
    let mut concurrent = Vec::new();
    if options.skip_chats && options.skip_jobs {
        return Ok((retrieval, chats, jobs, concurrent));
    }
    run.warm_up().await.context("warming up the model")?;
    if !options.skip_chats && options.concurrent > 0 {
        let asked = &questions[..options.concurrent.min(questions.len())];
        concurrent = run
            .concurrent(asked)
            .await
            .context("asking questions at once")?;
        eprintln!(
            "{} chats at once, first tokens (ms): {concurrent:?}",
            asked.len()
        );
    }
    if !options.skip_chats {
        for question in questions {
            let result = run.ask(question).await.context(question.id.clone())?;
            eprintln!(
                "{:<28} {:<9} {} {:?}",
                result.id,
                result.status,
                if result.correct { "right" } else { "wrong" },
                shorten(&result.answer)
            );
            chats.push(result);
        }
        for question in &suite.off_topic {
            let result = run
                .ask_off_topic(&question.id, &question.question)
                .await
                .context(question.id.clone())?;
            eprintln!(
                "{:<28} {:<9} {} {:?}",
                result.id,
                result.status,
                if result.correct {
                    "handled"
                } else {
                    "not handled"
                },
                shorten(&result.answer)
            );
            chats.push(result);
        }
    }
    if !options.skip_jobs {
        for spec in &suite.jobs {
            let result = run.job(spec).await.context(spec.id.clone())?;
            eprintln!(
                "{:<28} {:<9} {} {}",
                result.id,
                result.status,
                if result.valid { "valid" } else { "invalid" },
                result
                    .problem
                    .as_deref()
                    .or(result.error.as_deref())
                    .unwrap_or("")
            );
            jobs.push(result);
        }
    }
    Ok((retrieval, chats, jobs, concurrent))
}

/// `name` in the directory of this executable.
fn beside_this_program(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    let dir = exe.parent().context("this program's directory")?;
    Ok(dir.join(name))
}

/// The first 100 characters of an answer, for progress lines.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(100).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}
