//! Optional hooks into a load run, for callers that need more than the summary (a
//! migration rehearsal buckets transactions by phase): an observer called once per
//! finished transaction, and a stop flag that ends the run early. With the default
//! (no hooks) a run behaves exactly as without them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How a transaction attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// The server answered with an error (the message is in [`TxEvent::error`]).
    Error,
    /// `statement_timeout` cancelled it, or pgx gave up on an answer.
    Timeout,
}

/// One finished transaction attempt, warmup included.
#[derive(Debug, Clone, Copy)]
pub struct TxEvent<'a> {
    /// The script's name, as in the experiment file.
    pub script: &'a str,
    pub started: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
}

pub type Observer = Arc<dyn Fn(&TxEvent) + Send + Sync>;

#[derive(Clone, Default)]
pub struct Hooks {
    /// Called by every client, on its own thread, after each transaction attempt: keep it
    /// short (it runs between the client's transactions).
    pub observer: Option<Observer>,
    /// Set it to end the run: clients stop after their current transaction, whatever
    /// `duration` says, and no further runs of the sweep start. The summary of a stopped
    /// run still divides by the configured duration, so read a stopped run through the
    /// observer, not through its `LoadResult`.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Hooks {
    pub fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    pub(crate) fn observe(&self, event: &TxEvent) {
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("observer", &self.observer.is_some())
            .field("stop", &self.stop)
            .finish()
    }
}
