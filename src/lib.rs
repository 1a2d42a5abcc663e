//! pgx: safe PostgreSQL migrations and evidence-based index experiments.
//!
//! `app` dispatches the commands defined in `cli`; `target` decides which server to use
//! (`cluster` is the embedded one); `migrate` applies migrations; `experiment` builds
//! datasets and measures variants, `explain` and `stats` turn plans and samples into
//! facts, and `report` renders them.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod compare;
pub mod db;
pub mod error;
pub mod exit;
pub mod experiment;
pub mod explain;
pub mod git;
pub mod host;
pub mod interrupt;
pub mod lint;
pub mod loadtest;
pub mod migrate;
pub mod output;
pub mod pgpass;
pub mod promote;
pub mod rehearse;
pub mod report;
pub mod sqlsplit;
pub mod stats;
pub mod target;
pub mod tls;
pub mod units;
pub mod values;
pub mod yaml;

use std::path::PathBuf;

/// The project directory: the nearest ancestor of the working directory that has
/// `migrations/` or `experiments/`, else the working directory itself.
pub fn project_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|dir| dir.join("migrations").is_dir() || dir.join("experiments").is_dir())
        .map(PathBuf::from)
        .unwrap_or(cwd)
}
