//! Does pgx name the same winner twice? Runs an experiment (index-strategies by default)
//! twice at its default scale with the release `pgx`, on the cached dataset, and records
//! per query and parameter set whether the winner is the same, how far each median moved
//! between the runs, and both runs' A/A floors. Writes
//! reports/benchmarks/winner-stability.md; the runs' own reports go to a temporary
//! directory (the committed reports are not touched).
//!
//!     cargo bench --bench winner_stability
//!     PGX_BENCH_EXPERIMENT=trigram-search cargo bench --bench winner_stability
//!
//! A benchmark, not a test: it records what happened and asserts nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pgx::experiment::result::{Cell, ExperimentResult};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = std::env::var("PGX_BENCH_EXPERIMENT").unwrap_or_else(|_| "index-strategies".into());
    let out = tempfile::tempdir().expect("temporary directory");
    // The dataset first, so both measured runs start from the same cached base.
    let status = Command::new(env!("CARGO_BIN_EXE_pgx"))
        .current_dir(root)
        .args(["experiment", &name, "--dataset-only"])
        .status()
        .expect("run pgx");
    assert!(status.success(), "building the dataset of {name} failed");
    let load_before = pgx::host::load_average();
    let runs: Vec<(ExperimentResult, f64)> = (1..=2)
        .map(|i| run(root, &name, &out.path().join(format!("run{i}"))))
        .collect();
    let load_after = pgx::host::load_average();
    let md = render(&name, &runs, load_before, load_after);
    let path = root.join("reports/benchmarks/winner-stability.md");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("reports/benchmarks");
    std::fs::write(&path, md).expect("write the benchmark report");
    eprintln!("wrote {}", path.display());
}

fn run(root: &Path, name: &str, out: &Path) -> (ExperimentResult, f64) {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_pgx"))
        .current_dir(root)
        .args(["experiment", name, "--out"])
        .arg(out)
        .status()
        .expect("run pgx");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        status.code() == Some(0) || status.code() == Some(1),
        "pgx experiment {name} failed"
    );
    let json: PathBuf = out.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&json).expect("the run's JSON");
    (
        pgx::report::json::parse(&text).expect("a pgx result"),
        seconds,
    )
}

fn label(r: &ExperimentResult, cell: Option<usize>) -> String {
    cell.and_then(|i| r.cells.get(i))
        .map(|c| pgx::report::row_label(r, c))
        .unwrap_or_else(|| "(reference)".into())
}

fn median(c: &Cell) -> Option<f64> {
    c.execution.as_ref().map(|s| s.median)
}

fn render(
    name: &str,
    runs: &[(ExperimentResult, f64)],
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
) -> String {
    let (a, b) = (&runs[0].0, &runs[1].0);
    let mut md = String::new();
    let _ = writeln!(md, "# Winner stability: `{name}` run twice\n");
    let _ = writeln!(
        md,
        "Produced by `cargo bench --bench winner_stability`: `pgx experiment {name}` twice in a row at its default scale (**{}**) on the cached dataset, release build, embedded PostgreSQL; nothing else heavy ran. Each run interleaves its own cells in rounds and carries its own A/A control; the two runs are compared here only by what they concluded.\n",
        a.scale
    );
    let load = |l: Option<[f64; 3]>| l.map_or("?".into(), |l| format!("{:.2}", l[0]));
    let _ = writeln!(
        md,
        "| | run 1 | run 2 |\n|---|---|---|\n| wall time | {:.1} s | {:.1} s |\n| schedule | {} rounds × {}, seed {} | {} rounds × {}, seed {} |\n| noisy | {} | {} |\n| commit | `{}` | `{}` |\n\nLoad average (1 min) {} before the first run, {} after the second; {} CPUs.\n",
        runs[0].1,
        runs[1].1,
        a.schedule.rounds,
        a.schedule.block,
        a.schedule.seed,
        b.schedule.rounds,
        b.schedule.block,
        b.schedule.seed,
        a.analysis.noisy.as_deref().unwrap_or("no"),
        b.analysis.noisy.as_deref().unwrap_or("no"),
        a.environment.git_commit,
        b.environment.git_commit,
        load(load_before),
        load(load_after),
        a.environment.cpus
    );
    let floors = |r: &ExperimentResult| -> BTreeMap<(String, String), f64> {
        r.analysis
            .floors
            .iter()
            .map(|f| ((f.query.clone(), f.params.clone()), f.floor))
            .collect()
    };
    let (floors_a, floors_b) = (floors(a), floors(b));
    let _ = writeln!(md, "## Winners\n");
    let _ = writeln!(
        md,
        "| query | params | winner, run 1 | winner, run 2 | same | A/A floor 1 | A/A floor 2 | reference median 1 → 2 |\n|---|---|---|---|---|---|---|---|"
    );
    let mut same = 0;
    for (fa, fb) in a.analysis.findings.iter().zip(&b.analysis.findings) {
        let (wa, wb) = (label(a, fa.best), label(b, fb.best));
        if wa == wb {
            same += 1;
        }
        let key = (fa.query.clone(), fa.params.clone());
        let reference = |r: &ExperimentResult, f: Option<usize>| {
            f.and_then(|i| r.cells.get(i)).and_then(median)
        };
        let moved = match (reference(a, fa.reference), reference(b, fb.reference)) {
            (Some(x), Some(y)) => format!(
                "{} → {} ({:+.1}%)",
                pgx::report::fmt_ms(x),
                pgx::report::fmt_ms(y),
                (y / x - 1.0) * 100.0
            ),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {wa} | {wb} | {} | {:.1}% | {:.1}% | {moved} |",
            fa.query,
            fa.params,
            if wa == wb { "yes" } else { "**no**" },
            floors_a.get(&key).copied().unwrap_or(0.0) * 100.0,
            floors_b.get(&key).copied().unwrap_or(0.0) * 100.0,
        );
    }
    let _ = writeln!(
        md,
        "\nThe same winner (or the same \"nothing beyond noise\") in {same} of {} query/parameter rows.\n",
        a.analysis.findings.len()
    );
    let _ = writeln!(md, "## Every cell\n");
    let _ = writeln!(
        md,
        "How far each cell's median execution time moved from run 1 to run 2, and whether the two runs gave it the same verdict against its reference.\n"
    );
    let _ = writeln!(
        md,
        "| query | params | cell | median 1 | median 2 | moved | verdict 1 | verdict 2 |\n|---|---|---|---|---|---|---|---|"
    );
    let mut agree = 0;
    let mut compared = 0;
    let mut moves: Vec<f64> = Vec::new();
    for ca in a.compared_cells() {
        let Some(cb) = b.compared_cells().find(|c| {
            c.variant == ca.variant
                && c.settings == ca.settings
                && c.query == ca.query
                && c.form == ca.form
                && c.params == ca.params
        }) else {
            continue;
        };
        let (Some(ma), Some(mb)) = (median(ca), median(cb)) else {
            continue;
        };
        let moved = mb / ma - 1.0;
        moves.push(moved.abs());
        let verdict = |c: &Cell| {
            c.change
                .map_or("reference".to_string(), |ch| format!("{:?}", ch.verdict))
        };
        if ca.reference.is_some() {
            compared += 1;
            if verdict(ca) == verdict(cb) {
                agree += 1;
            }
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:+.1}% | {} | {} |",
            ca.query,
            ca.params,
            pgx::report::row_label(a, ca),
            pgx::report::fmt_ms(ma),
            pgx::report::fmt_ms(mb),
            moved * 100.0,
            verdict(ca),
            verdict(cb)
        );
    }
    moves.sort_by(f64::total_cmp);
    let _ = writeln!(
        md,
        "\nVerdicts agree on {agree} of {compared} compared cells. Medians moved by {:.1}% (median) and {:.1}% (largest) between the runs.",
        pgx::stats::percentile(&moves, 50.0) * 100.0,
        moves.last().copied().unwrap_or(0.0) * 100.0
    );
    md
}
