//! The A/A test of pgx's comparison method: variants identical to the baseline must come
//! out "no change" even while the machine's load swings, and a real effect must still be
//! found in the same run.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::stats::Verdict;
use pgx::target::Target;

/// CPU spinners on every core, busy for `on`, idle for `off`, until dropped: the kind of
/// drift a shared machine has (a build starting, a test suite, a neighbour's job).
struct Bursts {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Bursts {
    fn start(on: Duration, off: Duration) -> Bursts {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let burst = Instant::now();
                        while burst.elapsed() < on && !stop.load(Ordering::Relaxed) {
                            for i in 0..10_000u64 {
                                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                            }
                        }
                        let idle = Instant::now();
                        while idle.elapsed() < off && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        Bursts { stop, threads }
    }
}

impl Drop for Bursts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn identical_variants_are_not_called_different_under_bursty_load_and_a_real_effect_is() {
    let server = server();
    let target = Target::External(server.cluster().config("postgres"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/experiments/aa.yaml");
    let spec = spec::load(&path).unwrap();
    // Build (or reuse) the dataset first, so the bursts fall on the measurement only.
    pgx::experiment::prepare_dataset(
        &target,
        &spec,
        &RunOptions::default(),
        &mut Progress::quiet(),
    )
    .unwrap();

    let bursts = Bursts::start(Duration::from_secs(2), Duration::from_secs(2));
    let r = pgx::experiment::run(
        &target,
        &spec,
        &RunOptions::default(),
        &mut Progress::quiet(),
    )
    .unwrap();
    drop(bursts);

    let mut called = Vec::new();
    for c in r.cells.iter().filter(|c| c.variant.starts_with("same-")) {
        assert!(
            c.error.is_none(),
            "{}/{}: {:?}",
            c.variant,
            c.query,
            c.error
        );
        let change = c
            .change
            .unwrap_or_else(|| panic!("{}/{} has no comparison", c.variant, c.query));
        if change.verdict != Verdict::NoChange {
            called.push(format!(
                "{} {} {}: {:?} {:+.1}%",
                c.variant,
                c.query,
                c.params,
                change.verdict,
                change.ratio * 100.0
            ));
        }
    }
    assert_eq!(
        r.cells
            .iter()
            .filter(|c| c.variant.starts_with("same-"))
            .count(),
        8,
        "two identical variants × four cells"
    );
    assert!(
        called.is_empty(),
        "identical copies called different: {called:#?}"
    );

    // A cell and its reference run blocks of the same size: every cell of a query and
    // parameter set has as many samples as the others (all were measured in every round).
    for c in &r.cells {
        let peers: Vec<usize> = r
            .cells
            .iter()
            .filter(|p| p.query == c.query && p.params == c.params)
            .map(|p| p.samples.len())
            .collect();
        assert!(
            peers.iter().all(|&n| n == c.samples.len()),
            "{} {}: runs per cell {peers:?}",
            c.query,
            c.params
        );
    }

    // The same run still sees what the index on id does to the id-range scan.
    for params in ["p1", "p2"] {
        let c = r
            .cells
            .iter()
            .find(|c| c.variant == "id-index" && c.query == "range" && c.params == params)
            .unwrap();
        assert_eq!(
            c.change.map(|ch| ch.verdict),
            Some(Verdict::Faster),
            "range {params}: {:?}",
            c.change
        );
    }
}

#[test]
fn a_budget_stops_slow_cells_early_but_keeps_every_run_paired_with_its_reference() {
    let server = server();
    let target = Target::External(server.cluster().config("postgres"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/experiments/aa.yaml");
    let spec = spec::load(&path).unwrap();
    let options = RunOptions {
        // The whole-table aggregate takes milliseconds per run: 30 ms is a few runs.
        budget: Some(Duration::from_millis(30)),
        only: vec!["id-index".into()],
        ..Default::default()
    };
    let r = pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap();
    assert_eq!(r.runs.budget_ms, Some(30));
    let group = r
        .cells
        .iter()
        .find(|c| c.variant == "id-index" && c.query == "group")
        .unwrap();
    // The least a budget leaves a cell with is the fewest rounds in which the sign test
    // can call a change over this matrix's comparisons: with fewer, nothing could be.
    let compared = r
        .cells
        .iter()
        .filter(|c| c.change.is_some() && Some(&c.variant) != r.control.as_ref())
        .count();
    assert!(compared > 1, "{compared}");
    assert_eq!(r.runs.min, pgx::stats::rounds_to_call(compared));
    assert!(r.runs.min_in_rounds);
    let rounds = |c: &pgx::experiment::result::Cell| {
        c.samples
            .iter()
            .map(|s| s.round)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let n = rounds(group);
    assert!(
        (r.runs.min..r.schedule.rounds).contains(&n),
        "the budget stopped it after at least min rounds: {n} of {}",
        r.schedule.rounds
    );
    for c in r.cells.iter().filter(|c| c.change.is_some()) {
        assert!(rounds(c) >= r.runs.min, "{} {}", c.variant, c.query);
        assert_eq!(
            c.change.unwrap().rounds_needed,
            None,
            "{} {}",
            c.variant,
            c.query
        );
    }
    // Where the time went: the recorded runs took at least their execution times, and
    // the parts add up to no more than the whole.
    let wall = r.wall.as_ref().expect("the run records its wall time");
    let executed: f64 = r
        .cells
        .iter()
        .flat_map(|c| &c.samples)
        .map(|s| s.execution_ms / 1000.0)
        .sum();
    assert!(wall.measured >= executed, "{} < {executed}", wall.measured);
    assert!(
        wall.warm > 0.0 && wall.connect > 0.0 && wall.builds > 0.0,
        "{wall:?}"
    );
    let parts = wall.dataset + wall.builds + wall.measured + wall.warm + wall.connect + wall.plans;
    assert!(parts <= wall.total, "{parts} > {}", wall.total);
    // Every measured run of a compared cell has its reference's run in the same round.
    for c in r.cells.iter().filter(|c| c.reference.is_some()) {
        let reference = &r.cells[c.reference.unwrap()];
        for s in &c.samples {
            assert!(
                reference.samples.iter().any(|x| x.round == s.round),
                "{} {} round {} has no reference run",
                c.variant,
                c.query,
                s.round
            );
        }
    }
    let md = pgx::report::markdown::render(&r);
    assert!(
        md.contains(&format!(
            "budget 30.0 ms per cell, its fresh backends' unrecorded first runs included (at least {} rounds",
            r.runs.min
        )),
        "the report says so"
    );
    assert!(md.contains("| Wall time | "), "and where the time went");
}

/// A backend's history changes its speed (a session that had run one large sequential
/// scan answered a 16-partition lookup 2× slower ever after), so each cell's statement
/// runs on a backend of its own: identical copies then have identical histories. Here
/// `history` counts the traces `mark` left in its session: none, on the baseline and on
/// the A/A control alike. And a backend settles into a speed of its own, so every round
/// gets fresh ones: `runs-here` counts its runs on its backend.
#[test]
fn every_statement_runs_on_a_backend_of_its_own() {
    let r = run_fixture(&server(), "history.yaml", &RunOptions::default());
    let history: Vec<_> = r.cells.iter().filter(|c| c.query == "history").collect();
    assert_eq!(history.len(), 2, "baseline and A/A control");
    for c in history {
        assert!(c.error.is_none(), "{}: {:?}", c.variant, c.error);
        assert!(!c.samples.is_empty());
        let plan = c.plan.as_ref().expect("a measured plan");
        assert_eq!(
            plan.rows, 0.0,
            "{}: its backend had run `mark` {} times",
            c.variant, plan.rows
        );
    }
    assert_fresh_backend_every_round(r.cells.iter().filter(|c| c.query == "runs-here"));
    // `mark` did run (and so would have left traces in a shared backend).
    let mark = r.cells.iter().find(|c| c.query == "mark").unwrap();
    assert!(mark.error.is_none() && !mark.samples.is_empty());
}

/// More cells in a round than the engine keeps sessions open: the least recently used
/// one is closed before a new one opens, so the copies never see more than
/// `MAX_SESSIONS` backends of the run, and every cell is still measured on a fresh
/// backend of its own each round.
#[test]
fn more_cells_than_the_session_cap_close_the_least_recently_used() {
    use pgx::experiment::engine::MAX_SESSIONS;
    let server = server();
    // Watch the run's copies (pgx_run_session_cap_*) from outside, as the server sees them.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        let mut watch = server
            .cluster()
            .config("postgres")
            .connect(postgres::NoTls)
            .unwrap();
        std::thread::spawn(move || {
            let mut peak = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = watch
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname LIKE 'pgx\\_run\\_session\\_cap%' \
                           AND backend_type = 'client backend'",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                peak = peak.max(n);
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let r = run_fixture(&server, "session-cap.yaml", &RunOptions::default());
    stop.store(true, Ordering::Relaxed);
    let peak = watcher.join().unwrap();
    let cells: Vec<_> = r.cells.iter().filter(|c| c.query == "runs-here").collect();
    assert_eq!(
        cells.len(),
        60,
        "30 parameter sets on the baseline and the control"
    );
    assert!(MAX_SESSIONS < cells.len());
    // A closed backend may still be listed for a moment while it exits: a few over the
    // cap, never all 60 cells of a round.
    assert!(
        peak <= MAX_SESSIONS as i64 + 4,
        "{peak} backends of the run at once, cap {MAX_SESSIONS}"
    );
    assert!(
        peak >= MAX_SESSIONS as i64 - 8,
        "the run never came near the cap ({peak} backends): the test does not exercise it"
    );
    for c in &cells {
        assert!(
            c.error.is_none(),
            "{} {}: {:?}",
            c.variant,
            c.params,
            c.error
        );
    }
    assert_fresh_backend_every_round(cells);
}

/// The control's copy built differently from the baseline's (more rows for the same SQL):
/// the control differs in time *and* in blocks, and pgx says the builds differ rather
/// than calling the machine noisy; still no winner on timing.
#[test]
fn a_control_that_built_differently_is_named_a_build_difference_not_noise() {
    let server = server();
    let mut admin = server
        .cluster()
        .config("postgres")
        .connect(postgres::NoTls)
        .unwrap();
    admin
        .batch_execute("DROP ROLE IF EXISTS pgx_test_second_build")
        .unwrap();
    let options = RunOptions {
        rebuild: true,
        ..RunOptions::default()
    };
    let r = run_fixture(&server, "build-variance.yaml", &options);
    admin
        .batch_execute("DROP ROLE IF EXISTS pgx_test_second_build")
        .unwrap();
    let count: Vec<_> = r.cells.iter().filter(|c| c.query == "count").collect();
    let (baseline, control) = (
        count.iter().find(|c| c.variant == "plain").unwrap(),
        count
            .iter()
            .find(|c| Some(&c.variant) == r.control.as_ref())
            .unwrap(),
    );
    // What the database says: the control's table really is bigger.
    assert!(
        control.blocks().unwrap() > baseline.blocks().unwrap(),
        "{:?} vs {:?}",
        control.blocks(),
        baseline.blocks()
    );
    let why = r.analysis.noisy.as_deref().expect("the control differed");
    assert!(r.analysis.noisy_builds, "{why}");
    assert!(why.contains("blocks against the baseline's"), "{why}");
    let md = pgx::report::markdown::render(&r);
    assert!(md.contains("Builds differ:"), "{md}");
    assert!(!md.contains("Noisy run:"), "{md}");
}

/// Each cell's backend ran only its last round's runs and the one unrecorded run that
/// warms a fresh backend (`runs-here` returns one row per run its backend made): a fresh
/// backend every round, one per cell.
fn assert_fresh_backend_every_round<'a>(
    cells: impl IntoIterator<Item = &'a pgx::experiment::result::Cell>,
) {
    for c in cells {
        let last_round = c.samples.iter().map(|s| s.round).max().unwrap();
        let in_last = c.samples.iter().filter(|s| s.round == last_round).count();
        let rows = c.plan.as_ref().expect("a measured plan").rows;
        assert_eq!(
            rows,
            (in_last + 1) as f64,
            "{} {}: {rows} runs on its backend, {in_last} in the last round and its warmup",
            c.variant,
            c.params
        );
    }
}
