//! What the load's clients saw: every transaction attempt with its start and end, from
//! the load driver's observer hook, cut into windows afterwards.

use std::sync::Mutex;
use std::time::Instant;

use crate::loadtest::result::{Percentiles, new_histogram, percentiles};
use crate::loadtest::{Outcome, TxEvent};

/// Distinct error messages kept for the report.
const ERROR_SAMPLES: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub script: usize,
    pub started: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
}

#[derive(Default)]
struct Inner {
    scripts: Vec<String>,
    events: Vec<Event>,
    error_samples: Vec<String>,
}

/// Shared by the load's client threads (through the observer) and the rehearsal.
#[derive(Default)]
pub struct Collector {
    inner: Mutex<Inner>,
}

impl Collector {
    pub fn observe(&self, event: &TxEvent) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let script = match inner.scripts.iter().position(|s| s == event.script) {
            Some(i) => i,
            None => {
                inner.scripts.push(event.script.to_string());
                inner.scripts.len() - 1
            }
        };
        if let Some(message) = event.error
            && inner.error_samples.len() < ERROR_SAMPLES
            && !inner.error_samples.iter().any(|m| m == message)
        {
            inner.error_samples.push(message.to_string());
        }
        inner.events.push(Event {
            script,
            started: event.started,
            ended: event.ended,
            outcome: event.outcome,
        });
    }

    /// When the first attempt ended, if one did.
    pub fn first_end(&self) -> Option<Instant> {
        let inner = self.inner.lock().ok()?;
        inner.events.iter().map(|e| e.ended).min()
    }

    /// Everything collected so far, sorted by end.
    pub fn take(&self) -> Collected {
        let mut inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut events = std::mem::take(&mut inner.events);
        events.sort_by_key(|e| e.ended);
        Collected {
            scripts: std::mem::take(&mut inner.scripts),
            events,
            error_samples: std::mem::take(&mut inner.error_samples),
        }
    }
}

pub struct Collected {
    pub scripts: Vec<String>,
    pub events: Vec<Event>,
    pub error_samples: Vec<String>,
}

/// The load over one stretch of time.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub name: String,
    pub seconds: f64,
    /// Committed with their end inside the window.
    pub committed: u64,
    pub tps: f64,
    /// Of the committed transactions that started inside the window, so a transaction
    /// that waited through a migration counts where its wait began.
    pub latency_ms: Percentiles,
    /// Attempts that started inside the window and failed.
    pub errors: u64,
    pub timeouts: u64,
}

impl Collected {
    /// The window [from, to), all scripts or one.
    pub fn window(&self, name: &str, from: Instant, to: Instant, script: Option<usize>) -> Window {
        let mut histogram = new_histogram();
        let mut window = Window {
            name: name.to_string(),
            seconds: to.saturating_duration_since(from).as_secs_f64(),
            ..Window::default()
        };
        let inside = |t: Instant| t >= from && t < to;
        for event in self
            .events
            .iter()
            .filter(|e| script.is_none_or(|s| e.script == s))
        {
            match event.outcome {
                Outcome::Committed => {
                    if inside(event.ended) {
                        window.committed += 1;
                    }
                    if inside(event.started) {
                        let micros = (event.ended - event.started).as_micros().max(1);
                        histogram.saturating_record(micros as u64);
                    }
                }
                Outcome::Error if inside(event.started) => window.errors += 1,
                Outcome::Timeout if inside(event.started) => window.timeouts += 1,
                _ => {}
            }
        }
        window.tps = if window.seconds > 0.0 {
            window.committed as f64 / window.seconds
        } else {
            0.0
        };
        window.latency_ms = percentiles(&histogram);
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn windows_count_commits_by_end_and_latency_by_start() {
        let collector = Collector::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let event = |script, started, ended, outcome, error| TxEvent {
            script,
            started,
            ended,
            outcome,
            error,
        };
        collector.observe(&event("read", ms(0), ms(10), Outcome::Committed, None));
        // Started before 1000 ms, waited, ended after: a commit of the second window,
        // a latency of the first.
        collector.observe(&event("write", ms(900), ms(1500), Outcome::Committed, None));
        collector.observe(&event(
            "write",
            ms(1100),
            ms(1200),
            Outcome::Timeout,
            Some("t"),
        ));
        collector.observe(&event(
            "write",
            ms(1100),
            ms(1200),
            Outcome::Error,
            Some("boom"),
        ));
        assert_eq!(collector.first_end(), Some(ms(10)));
        let all = collector.take();
        assert_eq!(all.scripts, ["read", "write"]);
        assert_eq!(all.error_samples, ["t", "boom"]);
        let first = all.window("a", ms(0), ms(1000), None);
        assert_eq!(first.committed, 1);
        assert!(
            (first.latency_ms.max - 600.0).abs() < 1.0,
            "{:?}",
            first.latency_ms
        );
        let second = all.window("b", ms(1000), ms(2000), None);
        assert_eq!(
            (second.committed, second.errors, second.timeouts),
            (1, 1, 1)
        );
        assert_eq!(second.tps, 1.0);
        let reads = all.window("b", ms(1000), ms(2000), Some(0));
        assert_eq!(reads.committed, 0);
    }
}
