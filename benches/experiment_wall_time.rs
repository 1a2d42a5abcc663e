//! Wall time of experiments at their default scale, as a user runs them: the release
//! `pgx` binary, first with the dataset built from scratch (`--rebuild`), then again with
//! the cached base. Writes reports/benchmarks/experiment-wall-times.md (and the
//! experiments' own reports, as `pgx experiment` always does).
//!
//!     cargo bench --bench experiment_wall_time                     # every experiment
//!     PGX_BENCH_EXPERIMENTS=index-strategies cargo bench --bench experiment_wall_time
//!
//! A benchmark, not a test: machines are noisy, so it records numbers and asserts none.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let selected = std::env::var("PGX_BENCH_EXPERIMENTS").ok();
    // PGX_BENCH_CACHED_RUN=0 measures only the first run (one report per experiment).
    let cached_run = std::env::var("PGX_BENCH_CACHED_RUN").map_or(true, |v| v != "0");
    let mut names: Vec<String> = match &selected {
        // In the order given, so the most wanted numbers come first.
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        None => {
            let mut all: Vec<String> = std::fs::read_dir(root.join("experiments"))
                .expect("experiments/ exists")
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".yaml")
                        .map(str::to_string)
                })
                .collect();
            all.sort();
            all
        }
    };
    names.dedup();

    let mut rows = Vec::new();
    for name in &names {
        let first = run(root, name, true);
        let (cached, build) = if cached_run {
            let cached = run(root, name, false);
            (format!("{cached:.1} s"), format!("{:.1} s", first - cached))
        } else {
            ("-".to_string(), "-".to_string())
        };
        eprintln!("{name}: first {first:.1} s, cached {cached}");
        rows.push(format!(
            "| `{name}` | {} | {first:.1} s | {cached} | {build} |",
            default_scale(root, name)
        ));
        // Written after every experiment, so an interrupted sweep keeps what it measured.
        write_table(root, &names, &rows);
    }
}

fn write_table(root: &Path, names: &[String], rows: &[String]) {
    let machine = format!(
        "{} CPUs, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        postgres_version()
    );
    let mut md = String::from("# Experiment wall times\n\n");
    md.push_str("Produced by `cargo bench --bench experiment_wall_time`: the release `pgx experiment <name>` at the experiment's default scale and repeat count, on the embedded PostgreSQL. *First* builds the dataset from scratch (`--rebuild`); *cached* is a second run that reuses it. The difference is roughly the dataset build.\n\n");
    md.push_str(&format!("Machine: {machine}. Machines are shared and noisy: compare ratios within one run, not across runs. Rows may come from different runs, each measured by this code on this machine.\n\n"));
    md.push_str("| experiment | default scale | first run | cached run | dataset build (difference) |\n|---|---|---|---|---|\n");
    let out = root.join("reports/benchmarks");
    std::fs::create_dir_all(&out).expect("reports/benchmarks");
    let path = out.join("experiment-wall-times.md");
    // Rows of experiments not measured this time are kept from the previous file.
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let kept = previous
        .lines()
        .filter(|l| {
            l.starts_with("| `") && !names.iter().any(|n| l.starts_with(&format!("| `{n}`")))
        })
        .map(str::to_string);
    let mut all: Vec<String> = rows.iter().cloned().chain(kept).collect();
    all.sort();
    for row in all {
        md.push_str(&row);
        md.push('\n');
    }
    std::fs::write(&path, md).expect("write benchmark report");
    eprintln!("wrote {}", path.display());
}

fn run(root: &Path, name: &str, rebuild: bool) -> f64 {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgx"));
    cmd.current_dir(root).args(["experiment", name]);
    if rebuild {
        cmd.arg("--rebuild");
    }
    let status = cmd.status().expect("run pgx");
    assert!(status.success(), "pgx experiment {name} failed");
    started.elapsed().as_secs_f64()
}

fn default_scale(root: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(root.join("experiments").join(format!("{name}.yaml")))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("scale:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn postgres_version() -> String {
    pgx::cluster::find_bindir()
        .ok()
        .and_then(|dir| {
            Command::new(dir.join("postgres"))
                .arg("--version")
                .output()
                .ok()
        })
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "PostgreSQL ?".into())
}
