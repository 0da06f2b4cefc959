//! Which text generator jobs use, and the local one's life cycle.
//!
//! The local model is prepared and loaded in the background on a blocking thread, like the
//! embedding model (`materials::model`), so the server is up — and realtime collaboration
//! works — at once; AI requests wait briefly for it or answer 503 with the reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lectern_ai::backend::Backend;
use lectern_ai::local::{LocalBackend, LocalConfig, generator_dir, prepare_generator};
use lectern_ai::models::ModelsDir;
use lectern_ai::openai::{OpenAiBackend, OpenAiConfig};

use crate::config::{AiBackendKind, Config};
use crate::lazy_model::LazyModel;

/// How long a request waits for a local model that is being loaded (loading a prepared
/// model takes 1–2 s; a first-time preparation takes minutes and is better reported).
const LOAD_WAIT: Duration = Duration::from_secs(10);

/// The generator jobs use: fixed at start from the configuration. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Generator {
    /// AI is off, or misconfigured: every request answers 503 with this reason.
    Off(Arc<str>),
    /// A backend that is ready at once (an HTTP API, or one injected by tests/benches).
    Fixed(Arc<dyn Backend>),
    /// The local model, loaded on first use.
    Local(LocalGenerator),
}

impl Generator {
    /// The generator `config` asks for. Never fails: a configuration that cannot work
    /// (openai without a URL) is reported on every AI request instead, so the server
    /// still serves realtime collaboration.
    pub fn from_config(config: &Config) -> Self {
        match config.ai_backend {
            AiBackendKind::Off => Self::Off(
                "AI is turned off on this server (--ai-backend off); start it with \
                 --ai-backend local or --ai-backend openai"
                    .into(),
            ),
            AiBackendKind::Local => Self::Local(LocalGenerator::new(
                config.models_dir(),
                config.prepare_models,
            )),
            AiBackendKind::Openai => {
                let (Some(base_url), Some(model)) = (&config.ai_base_url, &config.ai_model) else {
                    return Self::Off(
                        "--ai-backend openai needs --ai-base-url and --ai-model \
                         (LECTERN_AI_BASE_URL, LECTERN_AI_MODEL)"
                            .into(),
                    );
                };
                let mut openai = OpenAiConfig::new(base_url.clone(), model.clone());
                openai.api_key = config
                    .ai_api_key
                    .as_ref()
                    .map(|secret| secret.expose().to_owned());
                match OpenAiBackend::new(openai) {
                    Ok(backend) => Self::Fixed(Arc::new(backend)),
                    Err(error) => Self::Off(
                        format!("the OpenAI-compatible backend cannot be set up: {error}").into(),
                    ),
                }
            }
        }
    }

    /// A short name of the model, part of the answer cache's key (so answers of one model
    /// are never served for another).
    pub fn model_name(&self, config: &Config) -> String {
        match self {
            Self::Off(_) => "off".into(),
            Self::Fixed(backend) => format!(
                "{}:{}",
                backend.name(),
                config.ai_model.as_deref().unwrap_or("")
            ),
            Self::Local(_) => "local:smollm2-135m-instruct".into(),
        }
    }

    /// The backend, waiting briefly for a local model being loaded; the error is a
    /// sentence for the user saying why and how to fix it.
    pub async fn backend(&self) -> Result<Arc<dyn Backend>, Arc<str>> {
        match self {
            Self::Off(reason) => Err(reason.clone()),
            Self::Fixed(backend) => Ok(backend.clone()),
            Self::Local(local) => match tokio::time::timeout(LOAD_WAIT, local.wait()).await {
                Ok(result) => result,
                Err(_) => Err(
                    "the local AI model is still being prepared (the first time \
                               this downloads about 200 MB); try again in a minute"
                        .into(),
                ),
            },
        }
    }

    /// Starts loading the local model now (no-op for other generators), so a first-time
    /// preparation shows its progress at start.
    pub fn start_loading(&self) {
        if let Self::Local(local) = self {
            local.start_loading();
        }
    }
}

/// The local generator, loaded on first use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalGenerator(LazyModel<Arc<dyn Backend>>);

impl LocalGenerator {
    /// The model in `models_dir`; when `prepare`, what is missing is made first.
    pub fn new(models_dir: PathBuf, prepare: bool) -> Self {
        Self(LazyModel::new("local generation model", move || {
            let backend = load(&ModelsDir::new(models_dir.clone()), prepare)?;
            Ok(Arc::new(backend) as Arc<dyn Backend>)
        }))
    }

    /// Starts preparing and loading on a blocking thread, unless already started.
    pub fn start_loading(&self) {
        self.0.start_loading();
    }

    /// Waits until the model is ready or known to be unavailable, loading it if needed.
    pub async fn wait(&self) -> Result<Arc<dyn Backend>, Arc<str>> {
        self.0.wait().await
    }
}

/// Prepares (if asked) and loads the local model; the error says what to do.
fn load(dir: &ModelsDir, prepare: bool) -> Result<LocalBackend, String> {
    let generator = if prepare {
        let progress = |line: &str| tracing::info!(target: "lectern::models", "{line}");
        let prepared = prepare_generator(dir, &progress)
            .map_err(|error| format!("the local AI model could not be prepared: {error}"))?;
        lectern_ai::runtime::init(&prepared.onnxruntime_library)
            .map_err(|error| error.to_string())?;
        prepared.dir
    } else {
        lectern_ai::runtime::init(&dir.onnxruntime_library()).map_err(|error| {
            format!(
                "{error}; run `lectern prepare-models --models-dir {}` or start with \
                 --prepare-models true",
                dir.path().display()
            )
        })?;
        generator_dir(dir)
    };
    LocalBackend::load(&generator, LocalConfig::default()).map_err(|error| {
        format!(
            "{error}; run `lectern prepare-models --models-dir {}`, start with \
             --prepare-models true, or use --ai-backend openai",
            dir.path().display()
        )
    })
}
