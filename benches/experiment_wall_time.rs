//! Wall time of experiments at their default scale, as a user runs them: the release
//! `pgx` binary, first with the dataset built from scratch (`--rebuild`), then again with
//! the cached base. Writes reports/benchmarks/experiment-wall-times.md (and the
//! experiments' own reports, as `pgx experiment` always does).
//!
//!     cargo bench --bench experiment_wall_time                     # every experiment
//!     PGX_BENCH_EXPERIMENTS=index-strategies cargo bench --bench experiment_wall_time
//!
//! With `PGX_BENCH_BASELINE_BIN=/path/to/an/older/pgx` it also times that binary on the
//! same experiments, alternating with this one (older first, this first, older cached,
//! this cached), on an embedded cluster of its own and with its reports written to a
//! temporary directory: the cost of a change measured in one run. It runs from
//! `PGX_BENCH_BASELINE_ROOT` (default: this project), so that it reads experiment files
//! of its own version.
//!
//! At another scale: `PGX_BENCH_SCALE=1 PGX_BENCH_ARGS="--budget 10s"` runs
//! `pgx experiment <name> --scale 1 --budget 10s`, whose report pgx itself names
//! `reports/<name>-scale1.md` / `.json` (the row says the scale and the arguments).
//!
//! A benchmark, not a test: machines are noisy, so it records numbers and asserts none.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let selected = std::env::var("PGX_BENCH_EXPERIMENTS").ok();
    // PGX_BENCH_CACHED_RUN=0 measures only the first run (one report per experiment).
    let cached_run = std::env::var("PGX_BENCH_CACHED_RUN").map_or(true, |v| v != "0");
    // Another scale than the file's, with extra `pgx experiment` arguments.
    let scale = std::env::var("PGX_BENCH_SCALE")
        .ok()
        .filter(|s| !s.is_empty());
    // `--scale S` first, then PGX_BENCH_ARGS: what each timed `pgx experiment` gets.
    let mut args: Vec<String> = scale
        .iter()
        .flat_map(|s| ["--scale".to_string(), s.clone()])
        .collect();
    args.extend(
        std::env::var("PGX_BENCH_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string),
    );
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

    let baseline = std::env::var("PGX_BENCH_BASELINE_BIN")
        .ok()
        .map(PathBuf::from);
    let scratch = tempfile::tempdir().expect("temporary directory");
    let ours = Binary {
        path: PathBuf::from(env!("CARGO_BIN_EXE_pgx")),
        root: None,
        data_dir: None,
        out: None,
        args: args.clone(),
    };
    // The older binary reads its own experiment files (PGX_BENCH_BASELINE_ROOT, e.g. a
    // worktree of its commit): a newer file may have keys it does not know.
    let older_root = std::env::var("PGX_BENCH_BASELINE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.to_path_buf());
    let older = baseline.map(|path| Binary {
        path,
        root: Some(older_root.clone()),
        data_dir: Some(root.join("target/pgx-cluster-baseline")),
        out: Some(scratch.path().to_path_buf()),
        args: args.clone(),
    });
    let mut rows = Vec::new();
    for name in &names {
        let load = pgx::host::load_average();
        let older_first = older.as_ref().map(|b| b.run(root, name, true));
        let first = ours.run(root, name, true);
        let older_cached = older
            .as_ref()
            .filter(|_| cached_run)
            .map(|b| b.run(root, name, false));
        let cached = cached_run.then(|| ours.run(root, name, false));
        let load_after = pgx::host::load_average();
        let seconds = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:.1} s"));
        let ratio = |cached: Option<f64>, first: f64| {
            cached.map_or("-".to_string(), |c| format!("{:.2}", c / first))
        };
        let loads = format!(
            "{} → {}",
            load.map_or("?".into(), |l| format!("{:.2}", l[0])),
            load_after.map_or("?".into(), |l| format!("{:.2}", l[0]))
        );
        eprintln!("{name}: first {first:.1} s, cached {}", seconds(cached));
        let (label, scale) = match &scale {
            Some(scale) => (format!("`{name}` {}", args.join(" ")), scale.clone()),
            None => (format!("`{name}`"), default_scale(root, name)),
        };
        // The first run's report (the cached run, when there is one, wrote over it).
        let stem = match args.iter().position(|a| a == "--scale") {
            Some(i) => format!("{name}-scale{}", args.get(i + 1).map_or("", String::as_str)),
            None => name.clone(),
        };
        let measuring = recorded_share(&root.join("reports").join(format!("{stem}.json")));
        rows.push(format!(
            "| {label} | {scale} | {first:.1} s | {} | {} | {measuring} | {loads} |",
            seconds(cached),
            ratio(cached, first)
        ));
        if let (Some(b), Some(older_first)) = (&older, older_first) {
            rows.push(format!(
                "| {label} (older: {}) | {scale} | {older_first:.1} s | {} | {} | - | {loads} |",
                b.path.display(),
                seconds(older_cached),
                ratio(older_cached, older_first)
            ));
        }
        // Written after every experiment, so an interrupted sweep keeps what it measured.
        write_table(root, &rows);
    }
}

/// A pgx binary to time, with where its cluster and reports go.
struct Binary {
    path: PathBuf,
    /// Where it runs (its project root); None: this project.
    root: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    out: Option<PathBuf>,
    /// Extra `pgx experiment` arguments (`--scale`, `--budget`).
    args: Vec<String>,
}

impl Binary {
    fn run(&self, root: &Path, name: &str, rebuild: bool) -> f64 {
        let started = Instant::now();
        let mut cmd = Command::new(&self.path);
        cmd.current_dir(self.root.as_deref().unwrap_or(root))
            .args(["experiment", name])
            .args(&self.args);
        if rebuild {
            cmd.arg("--rebuild");
        }
        if let Some(dir) = &self.data_dir {
            cmd.env("PGX_DATA_DIR", dir);
        }
        if let Some(out) = &self.out {
            cmd.arg("--out").arg(out);
        }
        let status = cmd.status().expect("run pgx");
        // 1: the run completed but a variant or cell failed; the wall time still counts.
        assert!(
            status.code() == Some(0) || status.code() == Some(1),
            "{} experiment {name} failed",
            self.path.display()
        );
        started.elapsed().as_secs_f64()
    }
}

fn write_table(root: &Path, rows: &[String]) {
    let machine = format!("{} CPUs, {}", pgx::host::cores(), postgres_version());
    let mut md = String::from("# Experiment wall times\n\n");
    md.push_str("Produced by `cargo bench --bench experiment_wall_time`: the release `pgx experiment <name>` at the experiment's default scale and repeat count (or at the scale and with the arguments a row names), on the embedded PostgreSQL. *First* builds the dataset from scratch (`--rebuild`); *cached* is a second run that reuses it; *cached / first* is their ratio. Rows marked *older* time another pgx binary (`PGX_BENCH_BASELINE_BIN`) in the same run, alternating with this one, on a cluster of its own. The load average (1 min) is read before and after each experiment's runs.\n\n");
    md.push_str(&format!("Machine: {machine}. Machines are shared and noisy: compare ratios within one run, not across runs. Rows may come from different runs, each measured by this code on this machine.\n\n"));
    md.push_str("*Recorded / measuring* is the share of the measuring time (recorded runs, unrecorded runs — the evidence pass and each fresh backend's first run —, opening backends) spent in recorded runs, with the three parts, from the run's report.\n\n");
    md.push_str("| experiment | scale | first run | cached run | cached / first | recorded / measuring | load average |\n|---|---|---|---|---|---|---|\n");
    let out = root.join("reports/benchmarks");
    std::fs::create_dir_all(&out).expect("reports/benchmarks");
    let path = out.join("experiment-wall-times.md");
    // Rows of experiments not measured this time are kept from the previous file.
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    // A row is known by its first two cells (experiment and arguments, scale).
    let key = |l: &str| {
        l.split('|')
            .skip(1)
            .take(2)
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("|")
    };
    let measured: Vec<String> = rows.iter().map(|r| key(r)).collect();
    // Rows of this table's layout only (seven columns).
    let kept = previous
        .lines()
        .filter(|l| {
            l.starts_with("| `") && l.matches(" | ").count() == 6 && !measured.contains(&key(l))
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

/// "57% (19.1 s of 33.4 s: 12.6 s unrecorded, 1.7 s opening)" from a run's report.
fn recorded_share(json: &Path) -> String {
    let Some(wall) = std::fs::read_to_string(json)
        .ok()
        .and_then(|text| pgx::report::json::parse(&text).ok())
        .and_then(|r| r.wall)
    else {
        return "-".into();
    };
    let measuring = wall.measured + wall.warm + wall.connect;
    if measuring <= 0.0 {
        return "- (nothing timed)".into();
    }
    format!(
        "{:.0}% ({:.1} s of {:.1} s: {:.1} s unrecorded, {:.1} s opening)",
        100.0 * wall.measured / measuring,
        wall.measured,
        measuring,
        wall.warm,
        wall.connect
    )
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
