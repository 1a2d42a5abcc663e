//! pgx's integration tests: one binary (as ripgrep has), a module per area. Tests of
//! what a user sees drive the real `pgx` binary; the shared set-up (the embedded server,
//! a database per test, the lock that lets a test have the server to itself) is in
//! `common`.

mod common;

mod cache;
mod cli;
mod compare;
mod comparisons;
mod connect;
mod dataset;
mod embedded;
mod experiment;
mod experiment_features;
mod faults;
mod gate;
mod lint;
mod load;
mod migrate;
mod migrate_flyway;
mod promote;
mod rehearse;
mod screen;
mod seeds;
mod signals;
mod source;
