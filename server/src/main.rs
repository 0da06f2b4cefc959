//! The `lectern` binary: parses configuration, sets up logging, serves until a signal.

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use lectern::config::{Cli, Command, CreateUser, LogFormat, PrepareModels};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::ExtractWorker(options) = &cli.command {
        // The extraction child: single-threaded, no runtime, limits set before the input
        // is read (see `materials/sandbox.rs`).
        std::process::exit(lectern::materials::sandbox::run_worker(options));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match cli.command {
        Command::Serve(config) => *config,
        Command::PrepareModels(options) => {
            init_logging(LogFormat::Text);
            return prepare_models(options).await;
        }
        Command::CreateUser(options) => {
            init_logging(LogFormat::Text);
            return create_user(options).await;
        }
        Command::ExtractWorker(_) => unreachable!("handled before the runtime starts"),
    };
    init_logging(config.log_format);
    // Every socket is a file descriptor; the usual soft limit (1024) is far below what a
    // school's worth of WebSockets needs.
    let open_files = lectern::transport::raise_open_files_limit();
    let max_connections = lectern::transport::connection_limit(&config);

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
    tracing::info!(
        %address,
        database = %redact(&database),
        max_connections,
        nofile = open_files.soft, // absent: unlimited
        "lectern listening"
    );
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

/// `lectern create-user`: makes an account of any role in the database `serve` uses (the
/// first admin; faculty when self-registration is limited to students).
async fn create_user(options: CreateUser) -> anyhow::Result<()> {
    // From the environment or standard input, never a flag: flags show in `ps`.
    let password = match std::env::var("LECTERN_NEW_USER_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if options.database_url.is_none() {
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("creating data directory {}", options.data_dir.display()))?;
    }
    let database = lectern_db::Database::connect(&options.database_url())
        .await
        .context("connecting to the database")?;
    // One hash, on this process's own threads: there is nothing to share them with.
    let passwords = lectern::auth::password::Passwords::new(1, 0);
    let account = lectern::api::accounts::NewAccount {
        email: options.email,
        display_name: options.display_name,
        password,
        role: options.role.into(),
    };
    let created = lectern::api::accounts::create_account(&database, &passwords, account).await;
    database.close().await;
    let user = created.context("creating the account")?;
    println!(
        "created {} account {} ({})",
        user.role.as_str(),
        user.email,
        user.id
    );
    Ok(())
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
