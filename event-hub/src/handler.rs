//! Handlers and the router that picks one by event type.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tidewell_core::{Envelope, Event, RawEnvelope};

use crate::backend::BoxFuture;

/// Why a handler failed, and whether running it again may help.
///
/// Any `std::error::Error` converts into a *retryable* failure, so `?` works in handlers; say
/// [`HandlerError::permanent`] for failures that no retry will fix (a validation error, a
/// payment for an unknown account).
pub struct HandlerError {
    retryable: bool,
    message: String,
}

impl HandlerError {
    /// A failure that may pass on a later run (a timeout, a database that is down).
    pub fn retryable(error: impl fmt::Display) -> Self {
        Self {
            retryable: true,
            message: error.to_string(),
        }
    }

    /// A failure that will not pass: the event goes straight to the dead-letter queue.
    pub fn permanent(error: impl fmt::Display) -> Self {
        Self {
            retryable: false,
            message: error.to_string(),
        }
    }

    /// Whether running the handler again may help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The error text (kept in the dead letter).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable {
            "retryable"
        } else {
            "permanent"
        };
        write!(f, "HandlerError({kind}: {})", self.message)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retryable(error)
    }
}

/// The outcome of routing one raw envelope.
pub(crate) enum Outcome {
    Handled(Result<(), HandlerError>),
    /// The envelope could not be decoded for its route (or has none): poison.
    Undecodable(String),
}

type ErasedHandler = Arc<dyn Fn(RawEnvelope) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// Handlers by event type, for a queue that carries several types.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tidewell_core::{Envelope, Event};
/// use tidewell_event_hub::{HandlerError, Router};
///
/// #[derive(Serialize, Deserialize)] struct UserCreated { id: u64 }
/// impl Event for UserCreated { const TYPE: &'static str = "auth.user.created"; const VERSION: u16 = 1; }
/// #[derive(Serialize, Deserialize)] struct UserDeleted { id: u64 }
/// impl Event for UserDeleted { const TYPE: &'static str = "auth.user.deleted"; const VERSION: u16 = 1; }
///
/// let router = Router::new()
///     .route(|e: Envelope<UserCreated>| async move { Ok::<_, HandlerError>(()) })
///     .route(|e: Envelope<UserDeleted>| async move { Ok::<_, HandlerError>(()) });
/// assert_eq!(router.event_types().len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<&'static str, ErasedHandler>,
    fallback: Option<ErasedHandler>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("event_types", &self.event_types())
            .finish()
    }
}

impl Router {
    /// A router with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes events of type `E::TYPE` to `handler` (replacing any earlier handler for it).
    #[must_use]
    pub fn route<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event + Send + 'static,
        F: Fn(Envelope<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.routes.insert(
            E::TYPE,
            Arc::new(move |raw: RawEnvelope| {
                let handler = Arc::clone(&handler);
                Box::pin(async move {
                    match raw.decode::<E>() {
                        Ok(envelope) => Outcome::Handled(handler(envelope).await),
                        Err(e) => Outcome::Undecodable(e.to_string()),
                    }
                })
            }),
        );
        self
    }

    /// Handles every event type without a route, as a [`RawEnvelope`] (payload still JSON): for
    /// code that forwards events it does not know the Rust types of, such as the WebSocket bridge.
    #[must_use]
    pub fn fallback<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(RawEnvelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.fallback = Some(Arc::new(move |raw: RawEnvelope| {
            let handler = Arc::clone(&handler);
            Box::pin(async move { Outcome::Handled(handler(raw).await) })
        }));
        self
    }

    /// The event types this router handles.
    pub fn event_types(&self) -> Vec<&'static str> {
        let mut types: Vec<_> = self.routes.keys().copied().collect();
        types.sort_unstable();
        types
    }

    pub(crate) fn dispatch(&self, raw: RawEnvelope) -> BoxFuture<'static, Outcome> {
        match self.routes.get(raw.event_type()).or(self.fallback.as_ref()) {
            Some(handler) => handler(raw),
            None => {
                let message = format!(
                    "no handler for event type {:?} (this subscription handles {:?})",
                    raw.event_type(),
                    self.event_types()
                );
                Box::pin(async move { Outcome::Undecodable(message) })
            }
        }
    }
}
