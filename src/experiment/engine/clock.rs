//! The run's clock: an estimate of the time left for the progress line, and where the
//! wall time went for the report.

use std::time::{Duration, Instant};

use crate::experiment::result::WallTimes;

pub struct Clock {
    pub wall: WallTimes,
    started: Instant,
    /// EXPLAINs each cell may still run (an upper bound: comparisons stop when decided).
    runs_left: Vec<u64>,
    /// Wall time one run of each cell took (a moving average).
    cost: Vec<Option<f64>>,
    /// Builds still to do, and what the ones done took.
    pub builds_left: usize,
    build_seconds: Vec<f64>,
}

impl Clock {
    pub fn new(cells: usize) -> Clock {
        Clock {
            wall: WallTimes::default(),
            started: Instant::now(),
            runs_left: vec![0; cells],
            cost: vec![None; cells],
            builds_left: 0,
            build_seconds: Vec::new(),
        }
    }

    /// The cell will run up to `runs` more EXPLAINs.
    pub fn expect(&mut self, cell: usize, runs: u64) {
        self.runs_left[cell] = runs;
    }

    /// The cell runs no more.
    pub fn forget(&mut self, cell: usize) {
        self.runs_left[cell] = 0;
    }

    /// One EXPLAIN of `cell` done in `seconds`.
    pub fn ran(&mut self, cell: usize, seconds: f64) {
        self.runs_left[cell] = self.runs_left[cell].saturating_sub(1);
        self.cost[cell] = Some(match self.cost[cell] {
            Some(c) => 0.8 * c + 0.2 * seconds,
            None => seconds,
        });
    }

    pub fn built(&mut self, seconds: f64) {
        self.builds_left = self.builds_left.saturating_sub(1);
        self.build_seconds.push(seconds);
        self.wall.builds += seconds;
    }

    /// (elapsed, left): the EXPLAINs still to run at what each took so far (cells not
    /// yet run at the median of those that did), plus the builds at their average.
    pub fn estimate(&self) -> (Duration, Duration) {
        let mut known: Vec<f64> = self.cost.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let typical = if known.is_empty() {
            0.01
        } else {
            crate::stats::percentile(&known, 50.0)
        };
        let runs: f64 = self
            .runs_left
            .iter()
            .zip(&self.cost)
            .map(|(n, c)| *n as f64 * c.unwrap_or(typical))
            .sum();
        let build = if self.build_seconds.is_empty() {
            1.0
        } else {
            self.build_seconds.iter().sum::<f64>() / self.build_seconds.len() as f64
        };
        let left = runs + self.builds_left as f64 * build;
        (
            self.started.elapsed(),
            Duration::from_secs_f64(left.clamp(0.0, 1e9)),
        )
    }
}
