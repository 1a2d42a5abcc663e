//! The A/A test of pgx's comparison method: variants identical to the baseline must come
//! out "no change" even while the machine's load swings, and a real effect must still be
//! found in the same run; identical work is not timed at all; a large effect is decided
//! in a few rounds; shared copies give the verdicts separate copies give.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::stats::Verdict;
use pgx::target::Target;

/// CPU spinners on every core, busy for `on`, idle for `off`, until dropped: the kind of
/// drift a shared machine has (a build starting, a test suite, a neighbour's job).
struct Bursts {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

// The tests that spin every core, and the one that needs the cores to itself (how many
// rounds a large effect takes when the rounds agree), run alone: `exclusive` (or
// `Server::alone`); every other test of this file takes `shared`, and runs beside its
// like (and beside other areas' tests, which hold the same gate shared).

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
    let spec = spec::read(&path).unwrap();
    // Build (or reuse) the dataset first, so the bursts fall on the measurement only.
    pgx::experiment::prepare_dataset(
        &target,
        &spec,
        &RunOptions::default(),
        &mut Progress::quiet(),
    )
    .unwrap();

    // Identical cells are timed too (by default their evidence spares them the
    // stopwatch): this is the test of the statistics themselves.
    let options = RunOptions {
        time_identical: true,
        ..RunOptions::default()
    };
    let (spinning, server) = server.alone();
    let bursts = Bursts::start(Duration::from_secs(2), Duration::from_secs(2));
    let r = pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap();
    drop(bursts);
    drop(spinning);
    drop(server);
    assert!(r.analysis.method.is_some(), "the sequential method decided");

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

    // A cell and its reference run blocks of the same size in every round they share.
    for c in r.cells.iter().filter(|c| c.reference.is_some()) {
        let reference = &r.cells[c.reference.unwrap()];
        for round in c.samples.iter().map(|s| s.round) {
            let count = |cell: &pgx::experiment::result::Cell| {
                cell.samples.iter().filter(|s| s.round == round).count()
            };
            assert_eq!(
                count(c),
                count(reference),
                "{} {} {} round {round}",
                c.variant,
                c.query,
                c.params
            );
        }
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
    let spec = spec::read(&path).unwrap();
    let options = RunOptions {
        // The whole-table aggregate takes milliseconds per run: 30 ms is a few runs.
        budget: Some(Duration::from_millis(30)),
        only: vec!["id-index".into()],
        time_identical: true,
        ..Default::default()
    };
    let r = pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap();
    assert_eq!(r.runs.budget_ms, Some(30));
    let group = r
        .cells
        .iter()
        .find(|c| c.variant == "id-index" && c.query == "group")
        .unwrap();
    // The least a budget leaves a cell with is the first look, the fewest rounds after
    // which a comparison can be decided.
    assert_eq!(r.runs.min, pgx::stats::sequential::LOOKS[0]);
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
        "the budget (or a decision) stopped it after at least min rounds: {n} of {}",
        r.schedule.rounds
    );
    for c in r.cells.iter().filter(|c| c.change.is_some()) {
        assert!(rounds(c) >= r.runs.min, "{} {}", c.variant, c.query);
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
            "budget 30.0 ms per cell, its fresh backends' unrecorded first runs included (past it a comparison stops, decided or not, after at least {} rounds)",
            r.runs.min
        )),
        "the report says so"
    );
    assert!(md.contains("| Wall time | "), "and where the time went");
}

/// Evidence first: a cell whose plan, blocks and rows equal its reference's does the
/// same work and is not timed; it says so in the tables and the JSON. Only the id-range
/// cells of the variant with an index on id differ, so only they, their reference and the
/// A/A control's cells of those rows are timed.
#[test]
fn cells_doing_their_references_work_are_reported_and_not_timed() {
    let r = run_fixture(&server(), "aa.yaml", &RunOptions::default());
    let timed: Vec<String> = r
        .cells
        .iter()
        .filter(|c| !c.samples.is_empty())
        .map(|c| format!("{} {} {}", c.variant, c.query, c.params))
        .collect();
    assert_eq!(
        timed,
        [
            "plain range p1",
            "plain range p2",
            "id-index range p1",
            "id-index range p2",
            "A/A control range p1",
            "A/A control range p2"
        ],
        "only what can differ is timed"
    );
    for c in r.cells.iter().filter(|c| c.samples.is_empty()) {
        let why = c.untimed.as_deref().unwrap_or_else(|| {
            panic!("{} {} {}: untimed, no reason", c.variant, c.query, c.params)
        });
        assert!(why.contains("not timed"), "{why}");
        assert!(
            c.change.is_none(),
            "{} {}: no timing, no verdict",
            c.variant,
            c.query
        );
        assert!(
            c.plan.is_some() && c.timed_plan.is_some(),
            "its evidence is kept"
        );
    }
    let same = r
        .cells
        .iter()
        .find(|c| c.variant == "same-1" && c.query == "range" && c.params == "p1")
        .unwrap();
    assert_eq!(
        same.untimed.as_deref(),
        Some("same plan, same blocks, same rows: not timed")
    );
    let evidence = same.evidence.expect("evidence against the reference");
    assert!(
        evidence.same_plan && evidence.same_buffers(),
        "{evidence:?}"
    );
    for params in ["p1", "p2"] {
        let c = r
            .cells
            .iter()
            .find(|c| c.variant == "id-index" && c.query == "range" && c.params == params)
            .unwrap();
        assert_eq!(
            c.change.map(|ch| ch.verdict),
            Some(Verdict::Faster),
            "{params}"
        );
    }
    // The tables and the JSON say it.
    let md = pgx::report::markdown::render(&r);
    let row = md
        .lines()
        .find(|l| l.starts_with("| same-1 | Seq Scan | not timed |"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(row.contains("same plan, same buffers"), "{row}");
    assert!(md.contains("**not timed**"), "How to read this explains it");
    let json = pgx::report::json::render(&r).unwrap();
    assert!(
        json.contains("\"untimed\": \"same plan, same blocks, same rows: not timed\""),
        "the JSON keeps why"
    );
    let terminal = pgx::report::terminal::render(&r);
    assert!(terminal.contains("not timed"), "{terminal}");
}

/// Ten variants identical to the baseline: nothing called, whether their identical
/// evidence spares them the stopwatch (the default) or they are timed anyway, under a
/// bursty load.
#[test]
fn an_experiment_with_ten_identical_variants_gets_no_call() {
    let server = server();
    let r = run_fixture(&server, "ten-identical.yaml", &RunOptions::default());
    let same: Vec<_> = r
        .cells
        .iter()
        .filter(|c| c.variant.starts_with("same-"))
        .collect();
    assert_eq!(same.len(), 20, "ten variants × two cells");
    assert!(
        same.iter()
            .all(|c| c.untimed.is_some() && c.change.is_none())
    );
    let target = Target::External(server.cluster().config("postgres"));
    let spec = spec::read(&experiment_fixture("ten-identical.yaml")).unwrap();
    let options = RunOptions {
        time_identical: true,
        ..RunOptions::default()
    };
    let (spinning, server) = server.alone();
    let bursts = Bursts::start(Duration::from_secs(2), Duration::from_secs(2));
    let r = pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap();
    drop(bursts);
    drop(spinning);
    drop(server);
    let mut judged = 0;
    let mut called = Vec::new();
    for c in r.cells.iter().filter(|c| c.variant.starts_with("same-")) {
        let change = c
            .change
            .unwrap_or_else(|| panic!("{} {} not judged", c.variant, c.query));
        judged += 1;
        if change.verdict != Verdict::NoChange {
            called.push(format!(
                "{} {}: {:+.1}%",
                c.variant,
                c.query,
                change.ratio * 100.0
            ));
        }
    }
    assert_eq!(judged, 20);
    assert!(
        called.is_empty(),
        "identical variants called different: {called:#?}"
    );
}

/// A variant that doubles the table makes its full scan twice as slow: with rounds that
/// agree, the sequential test calls it after at most five rounds, and stops.
#[test]
fn a_two_fold_effect_is_called_within_five_rounds() {
    // Rounds that agree: no other test runs meanwhile.
    let quiet = exclusive();
    let r = run_fixture(&server(), "two-fold.yaml", &RunOptions::default());
    drop(quiet);
    let c = r
        .cells
        .iter()
        .find(|c| c.variant == "doubled" && c.query == "scan")
        .unwrap();
    let change = c.change.expect("timed: its blocks differ");
    assert_eq!(change.verdict, Verdict::Slower, "{change:?}");
    assert!(change.ratio > 0.5, "{change:?}");
    // Whether the rounds agreed is the machine's doing: on a shared VM a whole cell's
    // runs are sometimes 1.6× slower for a moment (a fresh backend on a CPU the host is
    // busy with). The promise is about rounds that agree: the spread of the first five
    // rounds' log ratios says whether they did.
    let round_medians = |variant: &str| -> Vec<f64> {
        let cell = r
            .cells
            .iter()
            .find(|c| c.variant == variant && c.query == "scan")
            .unwrap();
        (1..=5)
            .filter_map(|round| {
                let mut v: Vec<f64> = cell
                    .samples
                    .iter()
                    .filter(|s| s.round == round)
                    .map(|s| s.execution_ms)
                    .collect();
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied()
            })
            .collect()
    };
    let logs: Vec<f64> = round_medians("doubled")
        .iter()
        .zip(round_medians("plain"))
        .map(|(d, p)| (d / p).ln())
        .collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    let sd =
        (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64).sqrt();
    let agreed = logs.len() == 5 && sd < 0.1;
    let runs = |variant: &str| -> Vec<f64> {
        r.cells
            .iter()
            .find(|c| c.variant == variant && c.query == "scan")
            .map(|c| c.samples.iter().map(|s| s.execution_ms).collect())
            .unwrap_or_default()
    };
    assert!(
        change.rounds <= 5 || !agreed,
        "the first five rounds agreed (log-ratio sd {sd:.3}) yet it was decided after {} rounds: {change:?}; runs: plain {:?}, doubled {:?}, control {:?}",
        change.rounds,
        runs("plain"),
        runs("doubled"),
        runs(pgx::experiment::matrix::CONTROL)
    );
    let rounds: std::collections::HashSet<usize> = c.samples.iter().map(|s| s.round).collect();
    assert_eq!(
        rounds.len(),
        change.rounds,
        "decided, it is measured no longer"
    );
}

/// Variants that only add indexes share one copy, each measured with the others'
/// indexes hidden: the same verdicts as on copies of their own, and the variant's
/// report shows only its own indexes.
#[test]
fn index_variants_share_a_copy_and_give_the_verdicts_of_separate_copies() {
    let server = server();
    let shared = run_fixture(&server, "aa.yaml", &RunOptions::default());
    let separate = run_fixture(
        &server,
        "aa.yaml",
        &RunOptions {
            separate_copies: true,
            ..RunOptions::default()
        },
    );
    let placement = |r: &pgx::experiment::ExperimentResult, name: &str| {
        r.variants
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.placement.clone())
    };
    assert_eq!(placement(&shared, "id-index").as_deref(), Some("shared"));
    assert_eq!(placement(&shared, "plain").as_deref(), Some("shared"));
    assert_eq!(placement(&separate, "id-index").as_deref(), Some("own"));
    let verdicts = |r: &pgx::experiment::ExperimentResult| -> Vec<String> {
        r.compared_cells()
            .map(|c| {
                format!(
                    "{} {} {}: {:?} {}",
                    c.variant,
                    c.query,
                    c.params,
                    c.change.map(|ch| ch.verdict),
                    c.plan.as_ref().map(|p| p.signature.as_str()).unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(verdicts(&shared), verdicts(&separate));
    // On the shared copy the baseline does not see the variant's index, nor is it in
    // the baseline's sizes; the variant sees it.
    let indexes = |name: &str| -> Vec<String> {
        shared
            .variants
            .iter()
            .find(|v| v.name == name)
            .unwrap()
            .relations
            .iter()
            .filter(|r| r.kind == pgx::experiment::result::RelationKind::Index)
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(indexes("plain"), ["public.t_k"]);
    assert_eq!(indexes("id-index"), ["public.t_id", "public.t_k"]);
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
    use pgx::experiment::engine::sessions::MAX_SESSIONS;
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
    assert_eq!(
        count.len(),
        2,
        "{:?}",
        r.variants
            .iter()
            .map(|v| (&v.name, &v.error))
            .collect::<Vec<_>>()
    );
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

/// A cell under settings that only steer the planner (cost constants, work_mem whose
/// effect shows as temporary or lossy blocks) with its reference's plan, blocks and rows
/// is not timed; one under settings that change how the same plan runs (JIT) is.
#[test]
fn settings_cells_are_timed_only_when_the_settings_can_change_the_same_plans_time() {
    let r = run_fixture(&server(), "settings-evidence.yaml", &RunOptions::default());
    let cell = |settings: &str| {
        r.cells
            .iter()
            .find(|c| c.variant == "plain" && c.settings == settings && c.query == "by-k")
            .unwrap_or_else(|| panic!("no cell under {settings}"))
    };
    let planner = cell("planner");
    assert_eq!(
        planner.evidence.map(|e| e.same_plan),
        Some(true),
        "the fixture's planner settings keep the plan"
    );
    assert!(
        planner.untimed.is_some() && planner.samples.is_empty(),
        "{:?}",
        planner.untimed
    );
    let jit = cell("jit");
    assert!(jit.untimed.is_none() && !jit.samples.is_empty());
    assert!(
        jit.change.is_some(),
        "judged against the reference settings"
    );
}

/// Two index-only variants that create an index of one name cannot both be built on the
/// shared copy: the second gets a copy of its own, and both are measured (the second
/// used to fail with "relation already exists").
#[test]
fn variants_creating_an_index_of_one_name_are_both_built() {
    let r = run_fixture(&server(), "same-index-name.yaml", &RunOptions::default());
    for variant in ["by-k", "by-k-and-pad"] {
        let v = r.variants.iter().find(|v| v.name == variant).unwrap();
        assert!(v.error.is_none(), "{variant}: {:?}", v.error);
        let cell = r
            .cells
            .iter()
            .find(|c| c.variant == variant && c.query == "by-k")
            .unwrap();
        assert_eq!(cell.evidence.map(|e| e.same_plan), Some(false), "{variant}");
    }
}
