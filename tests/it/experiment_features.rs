//! Engine features beyond index comparisons, on a small fixture experiment: workload and
//! table statistics, VACUUM timings, settings that cannot be SET, prepared statements
//! with generic plans, partition pruning, query forms and their equivalence check.

use std::path::Path;
use std::sync::OnceLock;

use crate::common::*;
use pgx::experiment::result::{Cell, ExperimentResult};
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::target::Target;

fn result() -> &'static ExperimentResult {
    static RESULT: OnceLock<ExperimentResult> = OnceLock::new();
    RESULT.get_or_init(|| {
        let server = server();
        let target = Target::External(server.cluster().config("postgres"));
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/experiments/features.yaml");
        let spec = spec::read(&path).unwrap();
        pgx::experiment::run(
            &target,
            &spec,
            &RunOptions {
                rebuild: true,
                ..Default::default()
            },
            &mut Progress::quiet(),
        )
        .unwrap()
    })
}

fn cells<'a>(r: &'a ExperimentResult, variant: &str, settings: &str, query: &str) -> Vec<&'a Cell> {
    r.cells
        .iter()
        .filter(|c| c.variant == variant && c.settings == settings && c.query == query)
        .collect()
}

#[test]
fn fillfactor_70_gives_more_hot_updates_than_100() {
    let r = result();
    let hot = |variant: &str| {
        let v = r.variants.iter().find(|v| v.name == variant).unwrap();
        assert!(v.error.is_none(), "{:?}", v.error);
        assert_eq!(v.workload.as_ref().unwrap().batches, 10);
        let t = &v.table_stats[0];
        assert!(
            t.after.updated - t.before.updated > 0,
            "the workload updated rows"
        );
        t.hot_percent().unwrap()
    };
    let (ff100, ff70) = (hot("ff100"), hot("ff70"));
    assert!(
        ff70 > ff100,
        "HOT% fillfactor 70 = {ff70:.1}, fillfactor 100 = {ff100:.1}"
    );
    let t = &r.variants[0].table_stats[0];
    assert!(
        t.after.dead_tuple_percent.is_some(),
        "pgstattuple is available in the embedded server"
    );
}

#[test]
fn hot_percentage_equals_pg_stat_user_tables() {
    let db = TestDb::new("hot_stats");
    let mut client = db.client();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text) WITH (fillfactor = 60); \
             INSERT INTO t SELECT g, 'x' FROM generate_series(1, 5000) g;",
        )
        .unwrap();
    client.batch_execute("VACUUM ANALYZE t").unwrap();
    let tables = vec!["t".to_string()];
    let before = pgx::experiment::tables::snapshot(&mut client, &tables, false).unwrap();
    let workload: pgx::experiment::spec::WorkloadSpec =
        serde_saphyr::from_str("batches: 4\nsql: UPDATE t SET v = v || 'y' WHERE id % 7 = 0; UPDATE t SET id = id + 100000 WHERE id % 97 = 0").unwrap();
    pgx::experiment::tables::run_workload(
        &mut client,
        workload.batches,
        workload.seed,
        &workload.sql,
    )
    .unwrap();
    let after = pgx::experiment::tables::snapshot(&mut client, &tables, false).unwrap();
    let change = pgx::experiment::result::TableStatsChange {
        table: "t".into(),
        before: before[0].1.clone(),
        after: after[0].1.clone(),
    };

    // The database's own view, from a fresh connection.
    let mut other = db.client();
    let row = other
        .query_one(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 't'",
            &[],
        )
        .unwrap();
    let (upd, hot): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        upd > 0 && hot > 0 && hot < upd,
        "some HOT, some not: {hot}/{upd}"
    );
    assert_eq!(change.after.updated - change.before.updated, upd);
    assert_eq!(change.after.hot_updated - change.before.hot_updated, hot);
    assert_eq!(
        change.hot_percent().unwrap(),
        100.0 * hot as f64 / upd as f64
    );
}

#[test]
fn vacuum_full_reclaims_what_the_workload_bloated() {
    let r = result();
    for v in r.compared_variants() {
        let m = &v.maintenance[0];
        // Plain VACUUM makes dead space reusable but gives (short of trailing empty
        // pages) no file space back, and adds free-space and visibility maps; VACUUM
        // FULL rewrites the table and its indexes.
        assert!(
            m.bytes_after_vacuum_full <= m.bytes_after_vacuum,
            "{}: {m:?}",
            v.name
        );
        if v.name == "ff100" {
            // Full pages: non-HOT updates left dead tuples and index entries that only
            // the rewrite gives back.
            assert!(m.bytes_after_vacuum_full < m.bytes_after_vacuum, "{m:?}");
        }
    }
}

#[test]
fn restart_only_settings_are_reported_not_applicable() {
    let r = result();
    let set = r.settings.iter().find(|s| s.name == "restart").unwrap();
    assert!(
        set.not_applicable
            .as_deref()
            .unwrap()
            .contains("shared_buffers"),
        "{set:?}"
    );
    let restart = cells(r, "ff100", "restart", "by-k");
    assert!(!restart.is_empty());
    assert!(
        restart
            .iter()
            .all(|c| c.error.as_deref().unwrap().starts_with("not applicable"))
    );
}

#[test]
fn prepared_generic_plan_prunes_at_run_time_and_custom_at_plan_time() {
    let r = result();
    let custom = cells(r, "ff100", "custom", "by-k")[0];
    let generic = cells(r, "ff100", "generic", "by-k")[0];
    assert!(
        custom.error.is_none() && generic.error.is_none(),
        "{:?} {:?}",
        custom.error,
        generic.error
    );
    let (c, g) = (
        custom.plan.as_ref().unwrap(),
        generic.plan.as_ref().unwrap(),
    );
    assert_eq!(c.partitions_scanned, 1);
    assert_eq!(c.subplans_removed, 0);
    assert_eq!(
        g.subplans_removed, 3,
        "generic plan: pruned at executor start-up: {}",
        g.signature
    );
    assert_eq!(custom.partitions_total, 4);
    assert_ne!(c.signature, g.signature);
}

#[test]
fn pruning_counts_equal_what_explain_says() {
    let r = result();
    let cell = cells(r, "ff100", "custom", "two-forms")[0];
    let plan = cell.plan.as_ref().unwrap();
    // Ask the database directly, on the base the baseline variant copied.
    let server = server();
    let mut client = pgx::target::connect(&server.cluster().config(&r.dataset.database)).unwrap();
    let text = client
        .simple_query(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM item WHERE k = 7 AND id < 3000",
        )
        .unwrap()
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap();
    let scanned = text.matches("\"Relation Name\"").count() as u64;
    assert_eq!(plan.partitions_scanned, scanned);
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_partition_tree('item') WHERE isleaf",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(cell.partitions_total, total as u64);
}

#[test]
fn forms_that_return_different_rows_are_not_equivalent() {
    let r = result();
    let q = r.queries.iter().find(|q| q.name == "two-forms").unwrap();
    let check = |variant: &str| {
        q.equivalence
            .iter()
            .find(|e| e.variant == variant && e.settings == "custom")
            .unwrap_or_else(|| panic!("no equivalence check for {variant}"))
            .clone()
    };
    assert!(check("ff100").equivalent, "{:?}", check("ff100"));
    let ff70 = check("ff70");
    assert!(
        !ff70.equivalent,
        "the off-by-one form returns other rows: {ff70:?}"
    );
    assert_eq!(ff70.fingerprints.len(), 3);
    assert!(
        cells(r, "ff100", "custom", "two-forms")
            .iter()
            .all(|c| c.form != "off-by-one"),
        "a form restricted to ff70 is not measured elsewhere"
    );
    let md = pgx::report::markdown::render(r);
    assert!(
        md.contains("Forms are not equivalent"),
        "the report says so"
    );
    assert!(md.contains("| restart | shared_buffers=256MB | not applicable: shared_buffers can only be changed by restarting the server"));
    assert!(md.contains("## Table statistics") && md.contains("## VACUUM vs VACUUM FULL"));
}

#[test]
fn load_runs_on_every_variant_and_is_reported() {
    let r = result();
    for v in r.compared_variants() {
        let load = v
            .load
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no load result", v.name));
        assert_eq!(load.points.len(), 2, "one point per client count");
        for point in &load.points {
            assert!(
                point.tps_median > 0.0 && point.errors == 0 && point.timeouts == 0,
                "{point:?}"
            );
        }
    }
    let md = pgx::report::markdown::render(r);
    assert!(md.contains("## Load") && md.contains("xychart-beta"));
}
