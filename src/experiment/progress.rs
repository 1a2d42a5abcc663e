//! Progress over the whole matrix: an indicatif bar with ETA on a terminal, plain lines
//! when output is piped (CI logs), so a long run never looks hung.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Ticks so far, also when no bar is drawn (callers settle a phase's total on it).
    done: u64,
    /// "~1m20s left", from the caller's estimate; shown before the message.
    left: String,
}

impl Progress {
    pub fn new(label: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                done: 0,
                left: String::new(),
            };
        }
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{label} {{spinner}} [{{bar:30}}] {{percent:>3}}% {{wide_msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(150));
        Progress {
            bar: Some(bar),
            done: 0,
            left: String::new(),
        }
    }

    /// No output at all (tests, library use).
    pub fn quiet() -> Progress {
        Progress {
            bar: Some(ProgressBar::hidden()),
            done: 0,
            left: String::new(),
        }
    }

    pub fn set_total(&mut self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total.max(1));
        }
    }

    /// A new phase with its own total; the ETA starts over (dataset and matrix differ).
    pub fn restart(&mut self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(0);
            bar.set_length(total.max(1));
            bar.reset_eta();
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn tick(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            // A phase with more steps than announced never shows past 100%.
            if bar.length().is_some_and(|len| bar.position() >= len) {
                bar.set_length(bar.position() + 1);
            }
        }
    }

    pub fn message(&mut self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}{text}", self.left));
        }
    }

    /// The bar in time rather than ticks: `done` spent, about `left` to go (the caller
    /// estimates it from what it measured so far).
    pub fn estimate(&mut self, done: Duration, left: Duration) {
        self.left = format!("~{} left · ", fmt_duration(left));
        if let Some(bar) = &self.bar {
            let done_ms = done.as_millis().min(u64::MAX as u128) as u64;
            let left_ms = left.as_millis().min(u64::MAX as u128) as u64;
            bar.set_length(done_ms.saturating_add(left_ms).max(1));
            bar.set_position(done_ms);
        }
    }

    /// A line that stays: above the bar on a terminal, plain on stderr otherwise.
    pub fn line(&mut self, text: &str) {
        match &self.bar {
            Some(bar) if bar.is_hidden() => {}
            Some(bar) => bar.println(text),
            None => crate::note!("{text}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// "45s", "3m05s", "1h02m".
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}
