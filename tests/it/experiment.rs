//! `pgx experiment` on real PostgreSQL at a tiny scale: what the report says is checked
//! against what the database itself says.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::common::*;
use pgx::experiment::result::{ExperimentResult, RelationKind};
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::explain::Access;
use pgx::target::Target;

/// 40k references, 2k documents: seconds, yet every plan shape of the real run.
const TINY: f64 = 0.002;

/// Experiments in this module run one at a time: they share cached bases.
static SERIAL: Mutex<()> = Mutex::new(());

fn target() -> (Server, Target) {
    let server = server();
    let config = server.cluster().config("postgres");
    (server, Target::External(config))
}

/// Run an experiment; while no other run of this module can start, check that it left
/// none of its copies behind (its own: other areas' runs of this process have other
/// experiment names).
fn run(path: &Path, options: RunOptions) -> ExperimentResult {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, target) = target();
    let spec = spec::read(path).unwrap();
    let result = pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap();
    let mut admin = pgx::target::connect(&target.admin_config()).unwrap();
    let leftovers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname ~ $1",
            &[&format!(
                "^pgx_run_{}_.*_{}_[0-9]+$",
                spec.name.replace('-', "_"),
                std::process::id()
            )],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "the run dropped every copy it made");
    result
}

fn index_strategies() -> &'static ExperimentResult {
    static RESULT: OnceLock<ExperimentResult> = OnceLock::new();
    RESULT.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/index-strategies.yaml");
        run(
            &path,
            RunOptions {
                scale: Some(TINY),
                repeat: Some(6),
                warmup: Some(1),
                rebuild: true,
                ..Default::default()
            },
        )
    })
}

fn cell<'a>(
    r: &'a ExperimentResult,
    variant: &str,
    query: &str,
) -> &'a pgx::experiment::result::Cell {
    r.cells
        .iter()
        .find(|c| c.variant == variant && c.query == query)
        .unwrap_or_else(|| panic!("no cell {variant}/{query}"))
}

#[test]
fn covering_index_gives_an_index_only_scan_and_the_baseline_does_not() {
    let r = index_strategies();
    let covering = cell(r, "covering", "lookup-by-parent");
    let baseline = cell(r, "current", "lookup-by-parent");
    assert!(covering.error.is_none() && baseline.error.is_none());
    let plan = covering.plan.as_ref().unwrap();
    assert_eq!(plan.access, Access::IndexOnlyScan, "{}", plan.signature);
    assert!(
        plan.index_names.iter().any(|i| i.contains("covering")),
        "{:?}",
        plan.index_names
    );
    assert_ne!(
        baseline.plan.as_ref().unwrap().access,
        Access::IndexOnlyScan
    );
    // At most six rounds (repeat 6; fewer once its comparison is decided), each with the
    // cell's block: more than one run for a cell this fast, the same number every round.
    let rounds: std::collections::BTreeSet<usize> =
        covering.samples.iter().map(|s| s.round).collect();
    assert!(
        (3..=6).contains(&rounds.len()),
        "repeat honoured as rounds: {}",
        rounds.len()
    );
    assert!(
        covering.samples.len() > rounds.len()
            && covering.samples.len().is_multiple_of(rounds.len()),
        "{}",
        covering.samples.len()
    );
    assert!(
        covering.execution.as_ref().unwrap().median_ci.is_some(),
        "n=6 has a CI"
    );
}

#[test]
fn brin_is_smaller_than_the_btree_and_sizes_match_pg_relation_size() {
    let r = index_strategies();
    let variant = r.variants.iter().find(|v| v.name == "brin-parent").unwrap();
    assert!(variant.error.is_none(), "{:?}", variant.error);
    let brin = variant
        .relations
        .iter()
        .find(|x| x.kind == RelationKind::Index && x.method == "brin")
        .unwrap();
    let baseline = r.variants.iter().find(|v| v.name == "current").unwrap();
    let btree = baseline
        .relations
        .iter()
        .find(|x| x.name == "dms.ux_reference_parentdocumentid")
        .unwrap();
    assert!(
        brin.bytes < btree.bytes,
        "brin {} vs btree {}",
        brin.bytes,
        btree.bytes
    );
    assert_eq!(btree.partitions, 16);

    // The base is an identical copy of what the baseline measured: ask the database.
    let (_server, target) = target();
    let mut client = pgx::target::connect(&target.config_for(&r.dataset.database)).unwrap();
    let actual: i64 = client
        .query_one(
            "SELECT sum(pg_relation_size(relid))::bigint FROM pg_partition_tree('dms.ux_reference_parentdocumentid') WHERE isleaf",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(btree.bytes, actual);
    // And a BRIN built the same way has the size reported for the variant.
    drop(client);
    let copy_name = format!("t_brin_{}", std::process::id());
    let mut admin = pgx::target::connect(&target.admin_config()).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {copy_name}"))
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {copy_name} TEMPLATE {}",
            r.dataset.database
        ))
        .unwrap();
    let mut copy = pgx::target::connect(&target.config_for(&copy_name)).unwrap();
    copy.batch_execute("CREATE INDEX idx_reference_brin_parent ON dms.reference USING brin (parentdocumentpartitionkey, parentdocumentid)")
        .unwrap();
    let brin_actual: i64 = copy
        .query_one(
            "SELECT sum(pg_relation_size(relid))::bigint FROM pg_partition_tree('dms.idx_reference_brin_parent') WHERE isleaf",
            &[],
        )
        .unwrap()
        .get(0);
    drop(copy);
    admin
        .batch_execute(&format!("DROP DATABASE {copy_name}"))
        .unwrap();
    assert_eq!(brin.bytes, brin_actual);
}

#[test]
fn rolled_back_delete_leaves_the_rows_and_every_run_deletes_the_same_rows() {
    let r = index_strategies();
    let delete = cell(r, "current", "delete-by-parent");
    assert!(delete.error.is_none(), "{:?}", delete.error);
    assert_eq!(delete.signatures.len(), 1, "same plan every run");
    // Each run found the same rows to delete: if a run had committed, later ones would find none.
    let first = &delete.samples[0];
    assert!(delete.samples.iter().all(
        |s| s.buffers.shared_dirtied <= first.buffers.shared_dirtied + first.buffers.shared_hit
    ));
    let lookup = cell(r, "current", "lookup-by-parent");
    assert!(lookup.plan.as_ref().unwrap().rows >= 1.0);

    // Same facts from the database: a copy's row count equals the report's row count
    // after the same DELETE ran and rolled back through pgx's measurement code.
    let db = TestDb::new("dml_rollback");
    let mut client = db.client();
    client
        .batch_execute("CREATE TABLE t (k int, v int); INSERT INTO t SELECT g % 10, g FROM generate_series(1, 1000) g; ANALYZE t;")
        .unwrap();
    use pgx::experiment::engine::measure::{self, Run, Session, Statement};
    let params = [pgx::db::TextParam(Some("3".into()))];
    let statement = Statement {
        sql: "DELETE FROM t WHERE k = $1",
        params: &params,
        rollback: true,
        hide: "",
        prepared: None,
    };
    let mut session = Session::open(&db.config(), "SET jit = off").unwrap();
    for _ in 0..5 {
        match measure::explain(&mut session, &statement, false).unwrap() {
            Run::Plan(explained) => {
                assert_eq!(explained.summary.rows, 0.0, "a DELETE returns no rows")
            }
            Run::Failed(message) => panic!("{message}"),
        }
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 1000);
    let reported = r
        .dataset
        .row_counts
        .iter()
        .find(|(t, _)| t == "dms.reference")
        .unwrap()
        .1;
    let mut base = pgx::target::connect(&db.server.cluster().config(&r.dataset.database)).unwrap();
    let actual: i64 = base
        .query_one("SELECT count(*) FROM dms.reference", &[])
        .unwrap()
        .get(0);
    assert_eq!(reported, actual);
}

#[test]
fn second_run_reuses_the_cached_base() {
    let first = index_strategies();
    assert!(!first.dataset.reused);
    let (_server, target) = target();
    let oid = |name: &str| -> u32 {
        let mut admin = pgx::target::connect(&target.admin_config()).unwrap();
        admin
            .query_one("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
            .unwrap()
            .get(0)
    };
    let before = oid(&first.dataset.database);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/index-strategies.yaml");
    let second = run(
        &path,
        RunOptions {
            scale: Some(TINY),
            repeat: Some(2),
            warmup: Some(0),
            only: vec!["covering".into()],
            ..Default::default()
        },
    );
    assert!(
        second.dataset.reused,
        "an unchanged experiment must reuse its base"
    );
    assert_eq!(second.dataset.database, first.dataset.database);
    assert_eq!(
        oid(&second.dataset.database),
        before,
        "the base was not rebuilt"
    );
    assert_eq!(
        second.compared_variants().count(),
        2,
        "--only keeps the baseline"
    );
    assert_eq!(
        second.control.as_deref(),
        Some(pgx::experiment::matrix::CONTROL),
        "and the A/A control"
    );
    // (run() checked that the variant copies were dropped afterwards.)

    // The covering variant was built by the first run and reused, not rebuilt: the
    // report says so, its statements keep their first times, and its plan is the same.
    let built = |r: &ExperimentResult| {
        r.variants
            .iter()
            .find(|v| v.name == "covering")
            .unwrap()
            .clone()
    };
    let (then, now) = (built(first), built(&second));
    assert!(!then.cached && now.cached, "first built, then reused");
    assert_eq!(
        now.statements.iter().map(|s| s.seconds).collect::<Vec<_>>(),
        then.statements
            .iter()
            .map(|s| s.seconds)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        cell(&second, "covering", "lookup-by-parent").signatures,
        cell(first, "covering", "lookup-by-parent").signatures
    );
    let mut admin = pgx::target::connect(&target.admin_config()).unwrap();
    let entries: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgx_variant_%' \
             AND shobj_description(oid, 'pg_database') LIKE '%\"experiment\":\"index-strategies\"%' \
             AND shobj_description(oid, 'pg_database') LIKE '%\"variant\":\"covering\"%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(entries, 1, "one cached build of the covering variant");
}

#[test]
fn reports_are_written_and_deterministic_in_layout() {
    let r = index_strategies();
    let out = tempfile::tempdir().unwrap();
    let paths = pgx::report::write_reports(r, out.path(), "index-strategies").unwrap();
    let md = std::fs::read_to_string(&paths[0]).unwrap();
    for needle in [
        "## Summary",
        "```mermaid",
        "<details>",
        "Scale | **0.002**",
        "PostgreSQL 15",
        "dms.reference",
    ] {
        assert!(md.contains(needle), "report lacks {needle}");
    }
    let json = std::fs::read_to_string(&paths[1]).unwrap();
    let back = pgx::report::json::parse(&json).unwrap();
    assert_eq!(back.cells.len(), r.cells.len());
    assert_eq!(
        pgx::report::markdown::render(&back),
        md,
        "`pgx report` re-renders a run's JSON exactly"
    );
    let terminal = pgx::report::terminal::render(r);
    assert!(terminal.contains("lookup-by-parent") && terminal.contains("covering"));

    // Another run of the same experiment has the same layout: the same headings and the
    // same rows in the same order, only the numbers (and verdicts) differ.
    let again = run(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/index-strategies.yaml"),
        RunOptions {
            scale: Some(TINY),
            repeat: Some(2),
            warmup: Some(0),
            ..Default::default()
        },
    );
    // (The summary lists the cells whose buffers differ, which is a finding, not layout.)
    let layout = |md: &str| -> Vec<String> {
        md.lines()
            .skip_while(|l| !l.starts_with("## Queries"))
            .filter_map(|l| {
                if l.starts_with('#') {
                    Some(l.to_string())
                } else if l.starts_with("| ") && !l.starts_with("| Schedule") {
                    l.split(" | ").next().map(str::to_string)
                } else {
                    None
                }
            })
            .collect()
    };
    let md_again = pgx::report::markdown::render(&again);
    assert_eq!(layout(&md_again), layout(&md));
    assert_ne!(md_again, md, "the numbers of two runs differ");
}
