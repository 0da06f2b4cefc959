//! The `lectern` binary: parses configuration, sets up logging, serves until a signal.

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use lectern::config::{Cli, Command, LogFormat, PrepareModels};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match cli.command {
        Command::Serve(config) => *config,
        Command::PrepareModels(options) => {
            init_logging(LogFormat::Text);
            return prepare_models(options).await;
        }
    };
    init_logging(config.log_format);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let database = config.database_url();
    let (prepare, models_dir) = (config.prepare_models, config.models_dir());
    let local_ai = config.ai_backend == lectern::config::AiBackendKind::Local;
    let state = lectern::AppState::build(config).await?;
    // Prepare missing local models now, so a first-time download shows its progress at
    // start rather than when the first upload or AI request needs them; they are loaded
    // into memory on first use.
    if prepare {
        tokio::task::spawn_blocking(move || prepare_in_background(&models_dir, local_ai));
    }
    tracing::info!(%address, database = %redact(&database), "lectern listening");
    lectern::serve(state, listener, shutdown_signal()).await
}

/// `lectern prepare-models`: the preparation `serve` runs on first use (the embedding
/// model, and the local generator), in the foreground, printing its progress.
async fn prepare_models(options: PrepareModels) -> anyhow::Result<()> {
    let dir = lectern_ai::models::ModelsDir::new(options.models_dir);
    tokio::task::spawn_blocking(move || {
        let progress = |line: &str| println!("{line}");
        lectern_ai::models::prepare_embeddings(&dir, &progress).with_context(|| {
            format!("preparing the embedding model in {}", dir.path().display())
        })?;
        lectern_ai::local::prepare_generator(&dir, &progress).with_context(|| {
            format!("preparing the local generator in {}", dir.path().display())
        })?;
        Ok(())
    })
    .await
    .context("the preparation thread failed")?
}

/// The start-up preparation of `serve`: failures are logged (AI requests then answer 503
/// with the reason), never fatal.
fn prepare_in_background(models_dir: &std::path::Path, local_ai: bool) {
    let dir = lectern_ai::models::ModelsDir::new(models_dir);
    let progress = |line: &str| tracing::info!(target: "lectern::models", "{line}");
    if let Err(error) = lectern_ai::models::prepare_embeddings(&dir, &progress) {
        tracing::warn!(%error, "the embedding model could not be prepared");
    }
    if local_ai && let Err(error) = lectern_ai::local::prepare_generator(&dir, &progress) {
        tracing::warn!(%error, "the local AI model could not be prepared");
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LECTERN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}

/// Hides a password in a database URL before it is logged.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
