//! The previous engine against this one, on the same experiments, alternating: every
//! comparison whose verdict differs, each explained. Writes
//! reports/benchmarks/engine-verdicts.md.
//!
//!     git worktree add /tmp/old-pgx <commit> && (cd /tmp/old-pgx && cargo build --release)
//!     PGX_BENCH_BASELINE_BIN=/tmp/old-pgx/target/release/pgx \
//!     PGX_BENCH_BASELINE_ROOT=/tmp/old-pgx \
//!         cargo bench --bench engine_verdicts
//!
//! `PGX_BENCH_EXPERIMENTS` (default `index-strategies,partition-strategies`) names the
//! experiments, run at their default scales; `PGX_BENCH_BASELINE_COMMIT` names the older
//! engine's commit in the report. Each binary runs on an embedded cluster of its own; the
//! older one first, then this one, per experiment. Verdicts compare across the two runs
//! only as verdicts: a call the older sign test could not make is expected (a test with
//! power, and evidence first), a cell now reported *not timed* did the same work as its
//! reference, and a call that changes direction would be a defect.
//!
//! A benchmark, not a test: it records what it finds and asserts nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgx::experiment::result::{Cell, ExperimentResult, Key};
use pgx::stats::Verdict;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(older) = std::env::var_os("PGX_BENCH_BASELINE_BIN").map(PathBuf::from) else {
        eprintln!("set PGX_BENCH_BASELINE_BIN to the previous engine's pgx binary");
        std::process::exit(2);
    };
    let older_root = std::env::var_os("PGX_BENCH_BASELINE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.to_path_buf());
    let commit = std::env::var("PGX_BENCH_BASELINE_COMMIT").unwrap_or_else(|_| "older".into());
    let names: Vec<String> = std::env::var("PGX_BENCH_EXPERIMENTS")
        .unwrap_or_else(|_| "index-strategies,partition-strategies".into())
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let scratch = tempfile::tempdir().expect("temporary directory");
    let mut md = String::from("# The previous engine against this one: verdicts\n\n");
    md.push_str(&format!(
        "Produced by `cargo bench --bench engine_verdicts`: each experiment at its default scale, run by the previous engine (commit `{commit}`, the sign test over 20 rounds, every cell timed) and then by this one (evidence first, the sequential t test, shared copies), each on an embedded cluster of its own, one after the other on this machine ({} CPUs). Every comparison whose verdict differs is listed with what each run measured. A cell now *not timed* did the same work as its reference (same plan, blocks and rows); *called now* is a call the sign test could not make; a call that changes direction would be a defect.\n\n",
        pgx::host::cores()
    ));
    for name in &names {
        let load = pgx::host::load_average();
        let old = run(
            &older,
            &older_root,
            root,
            name,
            &scratch.path().join("old"),
            "pgx-cluster-baseline",
        );
        let new = run(
            Path::new(env!("CARGO_BIN_EXE_pgx")),
            root,
            root,
            name,
            &scratch.path().join("new"),
            "pgx-cluster",
        );
        let load_after = pgx::host::load_average();
        md.push_str(&section(name, &old, &new, load, load_after));
        let out = root.join("reports/benchmarks");
        std::fs::create_dir_all(&out).expect("reports/benchmarks");
        std::fs::write(out.join("engine-verdicts.md"), &md).expect("write the report");
    }
    eprintln!("wrote reports/benchmarks/engine-verdicts.md");
}

/// One `pgx experiment` run; its JSON.
fn run(
    bin: &Path,
    cwd: &Path,
    root: &Path,
    name: &str,
    out: &Path,
    cluster: &str,
) -> ExperimentResult {
    std::fs::create_dir_all(out).expect("output directory");
    let started = std::time::Instant::now();
    let status = Command::new(bin)
        .current_dir(cwd)
        .env("PGX_DATA_DIR", root.join("target").join(cluster))
        .args(["experiment", name, "--out"])
        .arg(out)
        .status()
        .expect("run pgx");
    assert!(
        status.code() == Some(0) || status.code() == Some(1),
        "{} experiment {name} failed",
        bin.display()
    );
    eprintln!(
        "{name}: {} in {:.1} s",
        bin.display(),
        started.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(out.join(format!("{name}.json"))).expect("its JSON");
    serde_json::from_str(&text).expect("a readable result")
}

/// "Faster -42.1% [-44.0%, -40.2%], 20 rounds" or "not timed (…)".
fn describe(c: &Cell) -> String {
    if let Some(why) = &c.untimed {
        return why.clone();
    }
    match &c.change {
        Some(ch) if ch.verdict == Verdict::NoChange => format!(
            "{}, {} rounds, threshold {:.1}%",
            pgx::report::fmt_change(Some(ch)),
            ch.rounds,
            ch.threshold * 100.0
        ),
        Some(ch) => format!(
            "{} {}, {} rounds, threshold {:.1}%",
            verdict(ch.verdict),
            pgx::report::fmt_change(Some(ch)),
            ch.rounds,
            ch.threshold * 100.0
        ),
        None => "no comparison".into(),
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Faster => "faster",
        Verdict::Slower => "slower",
        Verdict::NoChange => "~",
    }
}

fn section(
    name: &str,
    old: &ExperimentResult,
    new: &ExperimentResult,
    load: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
) -> String {
    let control = |r: &ExperimentResult, c: &Cell| Some(&c.variant) == r.control.as_ref();
    let old_cells: BTreeMap<Key, &Cell> = old
        .cells
        .iter()
        .filter(|c| !control(old, c) && c.reference.is_some())
        .map(|c| (Key::of(c), c))
        .collect();
    let mut rows = Vec::new();
    let (mut compared, mut same, mut untimed, mut gained, mut lost, mut flipped) =
        (0, 0, 0, 0, 0, 0);
    for c in new
        .cells
        .iter()
        .filter(|c| !control(new, c) && c.reference.is_some())
    {
        let Some(o) = old_cells.get(&Key::of(c)) else {
            continue;
        };
        compared += 1;
        let old_v = o.change.map_or(Verdict::NoChange, |ch| ch.verdict);
        let new_v = c.change.map_or(Verdict::NoChange, |ch| ch.verdict);
        let kind = match (old_v, new_v, c.untimed.is_some()) {
            (a, b, _) if a == b => {
                if c.untimed.is_some() {
                    untimed += 1;
                }
                same += 1;
                continue;
            }
            (Verdict::NoChange, _, _) => {
                gained += 1;
                "called now: the sign test could not call it"
            }
            (_, Verdict::NoChange, true) => {
                untimed += 1;
                lost += 1;
                "not timed now: same plan, blocks and rows as its reference"
            }
            (_, Verdict::NoChange, false) => {
                lost += 1;
                "not called now: the t interval reaches into the threshold"
            }
            _ => {
                flipped += 1;
                "**DIRECTION CHANGED (a defect)**"
            }
        };
        rows.push(format!(
            "| {} · {} · {} | {} | {} | {} | {kind} |",
            c.query,
            c.params,
            c.cache,
            pgx::report::row_label(new, c),
            describe(o),
            describe(c)
        ));
    }
    let loads = |l: Option<[f64; 3]>| l.map_or("?".into(), |l| format!("{:.2}", l[0]));
    let mut md = format!(
        "## `{name}` (scale {})\n\n{compared} comparisons in both runs: {same} with the same verdict (of them {untimed} not timed now), {gained} called now that the sign test could not call, {lost} not called now, {flipped} changed direction. Load average {} → {}.\n\n",
        new.scale,
        loads(load),
        loads(load_after)
    );
    if rows.is_empty() {
        md.push_str("No verdict differs.\n\n");
    } else {
        md.push_str("| query · params · cache | cell | previous engine | this engine | why |\n|---|---|---|---|---|\n");
        for row in rows {
            md.push_str(&row);
            md.push('\n');
        }
        md.push('\n');
    }
    let wall = |r: &ExperimentResult| {
        r.wall
            .as_ref()
            .map_or("-".to_string(), |w| format!("{:.1} s", w.total))
    };
    md.push_str(&format!(
        "Wall time: previous engine {}, this engine {}.\n\n",
        wall(old),
        wall(new)
    ));
    md
}
