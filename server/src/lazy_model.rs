//! A model loaded once, on first use (or when asked at start), on a blocking thread: the
//! server is up — and realtime collaboration works — at once, and callers wait for the
//! model or learn why it cannot be loaded. The embedding model (`materials::model`) and the
//! local generator (`ai::generator`) are both one of these.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Loads the model, blocking; the error is a sentence for the operator saying what to do.
type Loader<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

/// Where the model is.
#[derive(Debug, Clone)]
enum State<T> {
    /// Nobody needed it yet.
    Idle,
    /// Being prepared or loaded.
    Loading,
    /// Loaded and usable.
    Ready(T),
    /// Cannot be used; the text says why and how to fix it.
    Unavailable(Arc<str>),
}

/// A model of type `T` (a cheap-to-clone handle) loaded lazily. Cheap to clone.
pub struct LazyModel<T>(Arc<Inner<T>>);

struct Inner<T> {
    /// What the model is, for logs ("embedding model").
    name: &'static str,
    loader: Loader<T>,
    started: AtomicBool,
    state: watch::Sender<State<T>>,
}

impl<T> Clone for LazyModel<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> fmt::Debug for LazyModel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyModel")
            .field("name", &self.0.name)
            .field("started", &self.0.started.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> LazyModel<T> {
    /// A model called `name` in logs, made by `loader` when first needed.
    pub fn new(
        name: &'static str,
        loader: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(Inner {
            name,
            loader: Box::new(loader),
            started: AtomicBool::new(false),
            state: watch::Sender::new(State::Idle),
        }))
    }

    /// Starts loading on a blocking thread, unless already started. The thread owns
    /// nothing but the state and ends when loading does.
    pub fn start_loading(&self) {
        if self.0.started.swap(true, Ordering::SeqCst) {
            return;
        }
        self.0.state.send_replace(State::Loading);
        let inner = Arc::clone(&self.0);
        let span = tracing::info_span!("load_model", model = inner.name);
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let next = match (inner.loader)() {
                Ok(model) => {
                    tracing::info!("{} ready", inner.name);
                    State::Ready(model)
                }
                Err(reason) => {
                    tracing::warn!(%reason, "{} unavailable", inner.name);
                    State::Unavailable(reason.into())
                }
            };
            inner.state.send_replace(next);
        });
    }

    /// Waits until the model is ready or known to be unavailable, loading it if needed.
    pub async fn wait(&self) -> Result<T, Arc<str>> {
        self.start_loading();
        let mut state = self.0.state.subscribe();
        let settled = state
            .wait_for(|state| matches!(state, State::Ready(_) | State::Unavailable(_)))
            .await;
        match settled.map(|state| state.clone()) {
            Ok(State::Ready(model)) => Ok(model),
            Ok(State::Unavailable(reason)) => Err(reason),
            Ok(State::Idle | State::Loading) | Err(_) => {
                Err(format!("the {}'s loader stopped before it finished", self.0.name).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn loads_once_for_every_waiter() {
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&loads);
        let model = LazyModel::new("test model", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(7)
        });
        let other = model.clone();
        let (a, b) = tokio::join!(model.wait(), other.wait());
        assert_eq!((a.expect("ready"), b.expect("ready")), (7, 7));
        assert_eq!(model.wait().await.expect("ready"), 7);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_load_is_reported_to_every_waiter() {
        let model: LazyModel<u8> = LazyModel::new("test model", || Err("no files".into()));
        assert_eq!(&*model.wait().await.expect_err("unavailable"), "no files");
        assert_eq!(&*model.wait().await.expect_err("still"), "no files");
    }
}
