//! Statement splitting of large migrations: `pgx::sqlsplit::split` and the whole
//! `pgx::migrate::load_dir` (read, split, checksum) that every `pgx apply` and `pgx status`
//! runs on every file, already-applied ones included.
//!
//! Generates data migrations of 1, 2, 4 and 8 MB (one `INSERT` per line, with quoted
//! strings, a comment and a dollar-quoted body now and then, as users write them) and
//! prints the time of each, best of three (`PGX_BENCH_RUNS`), and the time per MB: a linear splitter keeps
//! that figure flat as the file grows. The target is well under a second for 8 MB.
//!
//!     cargo bench --bench sql_split
//!     PGX_BENCH_SPLIT_MB=50 cargo bench --bench sql_split     # one size of your choice
//!     PGX_BENCH_RUNS=1 cargo bench --bench sql_split          # one run per size, not three
//!
//! A benchmark, not a test: it prints numbers and asserts none (the test suite checks
//! linearity by counting the splitter's work, `tests/it/migrate.rs`).

use std::time::{Duration, Instant};

/// A migration of at least `bytes` bytes.
fn migration(bytes: usize) -> String {
    let mut sql = String::with_capacity(bytes + 256);
    sql.push_str("CREATE TABLE IF NOT EXISTS bench_rows (id bigint PRIMARY KEY, note text);\n");
    let mut n = 0u64;
    while sql.len() < bytes {
        n += 1;
        if n.is_multiple_of(1000) {
            sql.push_str("-- a comment; with a semicolon\n");
            sql.push_str("DO $body$ BEGIN PERFORM 1; END $body$;\n");
        }
        sql.push_str(&format!(
            "INSERT INTO bench_rows (id, note) VALUES ({n}, 'row {n}; it''s text');\n"
        ));
    }
    sql
}

fn best_of(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..runs {
        let started = Instant::now();
        count = std::hint::black_box(f());
        best = best.min(started.elapsed());
    }
    (best, count)
}

/// A whole number from the environment, or `default`.
fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("{name} must be a positive whole number, got {text:?}");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let runs = env_number("PGX_BENCH_RUNS", 3);
    let sizes: Vec<usize> = match std::env::var("PGX_BENCH_SPLIT_MB") {
        Ok(_) => vec![env_number("PGX_BENCH_SPLIT_MB", 8)],
        Err(_) => vec![1, 2, 4, 8],
    };
    println!("| file | statements | split | split per MB | load_dir (read, split, checksum) |");
    println!("|---|---|---|---|---|");
    for mb in sizes {
        let sql = migration(mb << 20);
        let (split, statements) = best_of(runs, || pgx::sqlsplit::split(&sql).len());
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("cannot create a temporary directory: {e}");
                std::process::exit(2);
            }
        };
        let file = dir.path().join("V1__bench_rows.sql");
        if let Err(e) = std::fs::write(&file, &sql) {
            eprintln!("cannot write {}: {e}", file.display());
            std::process::exit(2);
        }
        let (load, _) = best_of(runs, || match pgx::migrate::load_dir(dir.path()) {
            Ok(files) => files.len(),
            Err(e) => {
                eprintln!("load_dir failed: {e:#}");
                std::process::exit(2);
            }
        });
        println!(
            "| {:.1} MB | {statements} | {:.3} s | {:.3} s | {:.3} s |",
            sql.len() as f64 / (1 << 20) as f64,
            split.as_secs_f64(),
            split.as_secs_f64() / mb as f64,
            load.as_secs_f64(),
        );
    }
}
