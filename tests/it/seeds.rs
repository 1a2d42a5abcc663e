//! The seeds' experiments as shipped (experiments/*.yaml), at a tiny scale, checked
//! against the database itself.

use std::path::Path;
use std::sync::Mutex;

use crate::common::*;
use pgx::experiment::result::{ExperimentResult, RelationKind};
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::explain::Access;
use pgx::target::Target;

/// One experiment at a time: they share the server and, sometimes, bases.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(name: &str, scale: f64, only: &[&str]) -> ExperimentResult {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = server();
    let target = Target::External(server.cluster().config("postgres"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("experiments/{name}.yaml"));
    let spec = spec::read(&path).unwrap();
    let options = RunOptions {
        scale: Some(scale),
        repeat: Some(2),
        warmup: Some(0),
        only: only.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap()
}

/// In a fresh copy of the base with `sql` applied: (what pgx's size query reports for
/// `index`, what pg_relation_size says).
fn index_bytes_in_copy(base: &str, sql: &str, index: &str) -> (i64, i64) {
    let server = server();
    let copy = format!("t_copy_{}_{}", std::process::id(), index.replace('.', "_"));
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {copy}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {base}"))
        .unwrap();
    let mut client = pgx::target::connect(&server.cluster().config(&copy)).unwrap();
    for statement in pgx::sqlsplit::split(sql) {
        client.batch_execute(&statement.sql).unwrap();
    }
    let bytes: i64 = client
        .query_one("SELECT pg_relation_size($1::text::regclass)", &[&index])
        .unwrap()
        .get(0);
    let reported = pgx::experiment::engine::build::relation_sizes(&mut client)
        .unwrap()
        .into_iter()
        .find(|x| x.name == index)
        .map(|x| x.bytes)
        .unwrap_or(-1);
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {copy}"))
        .unwrap();
    (reported, bytes)
}

#[test]
fn trigram_gist_knn_is_an_ordered_index_scan_and_sizes_match_pg_relation_size() {
    let r = run("trigram-search", 0.002, &["gist", "gin"]);
    let knn = r
        .cells
        .iter()
        .find(|c| c.variant == "gist" && c.query == "knn-hot" && c.error.is_none())
        .unwrap();
    let plan = knn.plan.as_ref().unwrap();
    assert!(
        plan.index_ordered,
        "KNN returns rows in <-> order from the index: {}",
        plan.signature
    );
    assert!(
        matches!(plan.access, Access::IndexScan),
        "{:?}",
        plan.access
    );
    assert!(
        plan.index_names.iter().any(|i| i.contains("gist")),
        "{:?}",
        plan.index_names
    );
    let baseline = r
        .cells
        .iter()
        .find(|c| c.variant == "no-trigram" && c.query == "knn-hot")
        .unwrap();
    assert!(
        !baseline.plan.as_ref().unwrap().index_ordered,
        "without GiST the rows are sorted"
    );

    let spec =
        spec::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/trigram-search.yaml"))
            .unwrap();
    for (variant, index) in [
        ("gist", "records.idx_records_search_norm_gist"),
        ("gin", "records.idx_records_artist_trgm"),
    ] {
        let reported = r
            .variants
            .iter()
            .find(|v| v.name == variant)
            .unwrap()
            .relations
            .iter()
            .find(|x| x.kind == RelationKind::Index && x.name == index)
            .unwrap_or_else(|| panic!("{index} not reported"))
            .bytes;
        let (pgx_says, database_says) = index_bytes_in_copy(
            &r.dataset.database,
            &spec.variant_sql(variant).unwrap(),
            index,
        );
        assert_eq!(
            pgx_says, database_says,
            "{index}: pgx's size query vs pg_relation_size on one index"
        );
        // GiST breaks insertion ties randomly, so another build differs by a few pages.
        let drift = (reported - database_says).abs() as f64 / database_says as f64;
        assert!(
            drift < 0.05,
            "{index}: reported {reported}, rebuilt {database_says}"
        );
    }
}

#[test]
fn tag_array_form_returns_exactly_the_exists_forms_items() {
    // The default scale: page 50 of "all of 3 tags" needs that many matching items.
    let r = run("tag-filtering", 0.005, &["tag-array"]);
    let query = r
        .queries
        .iter()
        .find(|q| q.name == "any-tag-page-1")
        .unwrap();
    let checks: Vec<_> = query
        .equivalence
        .iter()
        .filter(|e| e.variant == "tag-array")
        .collect();
    assert!(
        !checks.is_empty(),
        "forms were compared in the tag-array variant"
    );
    for check in checks {
        assert!(
            check.fingerprints.iter().any(|(f, _)| f == "tag-array"),
            "{check:?}"
        );
        assert!(
            check.fingerprints.iter().any(|(f, _)| f == "exists-union"),
            "{check:?}"
        );
        assert!(
            check.equivalent,
            "same items, same order-independent hash: {check:?}"
        );
        assert!(
            !check.fingerprints[0].1.starts_with("0 rows"),
            "a page with items: {check:?}"
        );
    }
}

#[test]
fn covering_feature_lookup_has_no_heap_fetches_after_vacuum() {
    let r = run("feature-lookups", 0.0004, &["narrow-covering"]);
    let cell = r
        .cells
        .iter()
        .find(|c| {
            c.variant == "narrow-covering"
                && c.query == "lookup-one"
                && c.params == "hot"
                && c.error.is_none()
        })
        .unwrap();
    let plan = cell.plan.as_ref().unwrap();
    assert_eq!(plan.access, Access::IndexOnlyScan, "{}", plan.signature);
    assert_eq!(plan.heap_fetches, 0);
    let narrow = r
        .cells
        .iter()
        .find(|c| c.variant == "narrow" && c.query == "lookup-one" && c.params == "hot")
        .unwrap();
    assert_ne!(narrow.plan.as_ref().unwrap().access, Access::IndexOnlyScan);
}
