//! Load tests: throughput and latency under concurrency (TPS and p50/p95/p99 per
//! client count), which EXPLAIN on an idle server cannot show.
//!
//! `spec` is the `load:` section of an experiment file; `generate` draws parameter
//! values; `client` is one simulated client (one connection, prepared statements,
//! bounded waits); `driver` runs the sweep (client groups at once, lock waits sampled by
//! `locks`, the backends' memory by `memory`, `verify` checks after every run); `result` is what reports read.

mod client;
pub mod driver;
pub mod generate;
pub mod hooks;
pub mod locks;
pub mod memory;
pub mod net;
pub mod result;
pub mod server;
pub mod spec;
pub mod timer;
pub mod wire;

pub use driver::{Sweep, run, run_with};
pub use hooks::{Hooks, Observer, Outcome, TxEvent};
pub use net::RttMode;
pub use result::{
    BackendMemory, LoadPoint, LoadResult, LoadTarget, LockWaits, Percentiles, RunStats,
    ServerActivity,
};
pub use spec::{Generator, LoadSpec, Mix, Pattern, ScriptSpec, StatementSpec};
