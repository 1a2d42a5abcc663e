//! What-if screening with HypoPG on real PostgreSQL: the estimates (hypothetical indexes,
//! plain EXPLAIN) beside the real build and measurement, variants HypoPG cannot express,
//! `--screen-only`, and a server without HypoPG.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::common::*;
use pgx::experiment::analysis::screening;
use pgx::experiment::result::{ExperimentResult, ScreenedCell, ScreenedVariant};
use pgx::experiment::screen;
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::explain::Access;
use pgx::report::{fmt_bytes, markdown, terminal};
use pgx::target::Target;

/// Runs in this module go one at a time: they share cached bases and count databases.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/experiments/screen.yaml")
}

fn target() -> (Server, Target) {
    let server = server();
    let config = server.cluster().config("postgres");
    (server, Target::External(config))
}

/// An admin connection; the server stays up as long as the returned handle lives.
fn admin() -> (Server, postgres::Client) {
    let server = server();
    let client = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    (server, client)
}

fn count_databases(admin: &mut postgres::Client, pattern: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname ~ $1",
            &[&pattern],
        )
        .unwrap()
        .get(0)
}

/// Run the fixture (the caller holds the serial lock); afterwards no copy of this
/// process is left, the screening copy included.
fn run_locked(options: RunOptions) -> ExperimentResult {
    let (_server, target) = target();
    let spec = spec::read(&fixture()).unwrap();
    let result = pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap();
    let leftovers = count_databases(
        &mut admin().1,
        &format!("^pgx_run_{}_.*_{}_[0-9]+$", spec.name, std::process::id()),
    );
    assert_eq!(leftovers, 0, "the run dropped every copy it made");
    result
}

/// The fixture screened (its file says `screen: true`), then built and measured.
fn screened() -> &'static ExperimentResult {
    static RESULT: OnceLock<ExperimentResult> = OnceLock::new();
    RESULT.get_or_init(|| {
        let _serial = serial();
        let (_server, mut admin) = admin();
        let available = admin
            .query_opt(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'",
                &[],
            )
            .unwrap()
            .is_some();
        assert!(
            available,
            "these tests need HypoPG on the test server: apt-get install postgresql-<major>-hypopg (scripts/test, the README's test command, installs it)"
        );
        run_locked(RunOptions {
            repeat: Some(6),
            warmup: Some(1),
            ..Default::default()
        })
    })
}

fn variant<'a>(r: &'a ExperimentResult, name: &str) -> &'a ScreenedVariant {
    r.screening
        .as_ref()
        .expect("the run screened")
        .variants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no screened variant {name}"))
}

fn screened_cell<'a>(
    r: &'a ExperimentResult,
    variant: &str,
    query: &str,
    params: &str,
) -> &'a ScreenedCell {
    r.screening
        .as_ref()
        .unwrap()
        .cells
        .iter()
        .find(|c| c.variant == variant && c.query == query && c.params == params)
        .unwrap_or_else(|| panic!("no screened cell {variant}/{query}/{params}"))
}

#[test]
fn a_btree_variant_is_screened_with_its_hypothetical_index_and_the_real_run_uses_the_real_one() {
    let r = screened();
    let s = r.screening.as_ref().unwrap();
    assert_eq!(s.unavailable, None);
    assert!(
        s.hypopg_version
            .as_deref()
            .is_some_and(|v| v.starts_with('1')),
        "{:?}",
        s.hypopg_version
    );
    let v = variant(r, "id-index");
    assert!(v.screenable, "{:?}", v.reason);
    assert_eq!(v.indexes.len(), 1);
    let h = &v.indexes[0];
    assert_eq!(h.declared.as_deref(), Some("public.t_id"));
    assert_eq!((h.table.as_str(), h.method.as_str()), ("public.t", "btree"));
    assert!(h.estimated_bytes > 0);

    for params in ["p1", "p2"] {
        let est = screened_cell(r, "id-index", "range", params);
        let plan = est.plan.as_ref().expect("an estimated plan");
        assert!(
            plan.index_names.contains(&h.name),
            "the screened plan names the hypothetical index {}: {}",
            h.name,
            plan.signature
        );
        assert!(est.uses_hypothetical);
        let base = screened_cell(r, "plain", "range", params);
        assert_eq!(base.plan.as_ref().unwrap().access, Access::SeqScan);
        assert!(!base.uses_hypothetical && base.reference.is_none());
        assert!(
            est.cost_change.is_some_and(|c| c < -0.5),
            "an index scan of 201 rows costs far less than a scan of 50k: {:?}",
            est.cost_change
        );
        assert!(est.cost.unwrap() < base.cost.unwrap());

        let real = r
            .cells
            .iter()
            .find(|c| c.variant == "id-index" && c.query == "range" && c.params == params)
            .unwrap();
        let real_plan = real.plan.as_ref().unwrap();
        assert!(
            real_plan.index_names.iter().any(|n| n == "t_id"),
            "the real plan uses the real index: {}",
            real_plan.signature
        );
    }
    let side = screening::side_by_side(r);
    let row = side
        .iter()
        .find(|x| x.screened.variant == "id-index" && x.screened.query == "range")
        .unwrap();
    assert_eq!(row.real_uses_index, Some(true));
    assert!(
        row.disagreements.iter().all(|d| !d.starts_with("plan")),
        "{:?}",
        row.disagreements
    );
}

#[test]
fn estimated_and_real_sizes_are_both_in_the_report() {
    let r = screened();
    let estimates = screening::index_estimates(r);
    let e = estimates
        .iter()
        .find(|e| e.variant == "id-index")
        .expect("the id-index estimate");
    let real = e.real.expect("the real index found");
    assert_eq!(real.name, "public.t_id");
    // The real size is the catalog's, read from the variant's copy when it was built.
    let built = r.variants.iter().find(|v| v.name == "id-index").unwrap();
    assert!(
        built
            .relations
            .iter()
            .any(|x| x.name == real.name && x.bytes == real.bytes)
    );
    assert!(e.factor.is_some_and(|f| f > 0.0));

    let md = markdown::render(r);
    assert!(md.contains("## Screening (what-if, HypoPG)"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| id-index |") && l.contains("hypothetical t_id"))
        .unwrap_or_else(|| panic!("a size row for id-index:\n{md}"));
    assert!(row.contains(&fmt_bytes(e.index.estimated_bytes)), "{row}");
    assert!(row.contains(&fmt_bytes(real.bytes)), "{row}");
    assert!(md.contains("Index Scan hypothetical t_id"), "{md}");
    let shown = terminal::render(r);
    assert!(shown.contains("screening (what-if, HypoPG)"), "{shown}");

    // A btree of 10 distinct values is deduplicated; HypoPG's estimate does not know.
    let grp = estimates
        .iter()
        .find(|e| e.variant == "grp-index")
        .expect("the grp-index estimate");
    assert!(
        grp.off && grp.factor.is_some_and(|f| f > screening::SIZE_FACTOR),
        "{:?} estimated {} real {:?}",
        grp.factor,
        grp.index.estimated_bytes,
        grp.real.map(|x| x.bytes)
    );
    assert!(md.contains("DISAGREE: off by more than 2×"), "{md}");

    // The JSON keeps it (the field optional for older readers).
    let json = serde_json::to_string(r).unwrap();
    let back: ExperimentResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back.schema_version, pgx::experiment::result::SCHEMA_VERSION);
    let s = back.screening.unwrap();
    assert_eq!(s.cells.len(), r.screening.as_ref().unwrap().cells.len());
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("screening");
    let old: ExperimentResult = serde_json::from_value(old).unwrap();
    assert!(old.screening.is_none());
}

#[test]
fn gin_and_drop_index_variants_are_not_screenable_and_still_measured() {
    let r = screened();
    let gin = variant(r, "pad-trgm");
    assert!(!gin.screenable);
    let reason = gin.reason.as_deref().unwrap();
    assert!(reason.contains("access method gin"), "{reason}");
    let drop = variant(r, "no-k-index");
    assert!(!drop.screenable);
    let reason = drop.reason.as_deref().unwrap();
    assert!(
        reason.contains("DROP INDEX") && reason.contains("hypopg_hide_index"),
        "{reason}"
    );
    let s = r.screening.as_ref().unwrap();
    assert!(
        !s.cells
            .iter()
            .any(|c| c.variant == "pad-trgm" || c.variant == "no-k-index"),
        "no estimate for a variant HypoPG cannot express"
    );
    // The real run builds and measures them as usual (timed where they differ).
    for name in ["pad-trgm", "no-k-index"] {
        let v = r.variants.iter().find(|v| v.name == name).unwrap();
        assert!(v.error.is_none(), "{:?}", v.error);
        assert!(
            r.cells
                .iter()
                .any(|c| c.variant == name && c.plan.is_some() && c.error.is_none())
        );
    }
    let md = markdown::render(r);
    assert!(
        md.contains("| pad-trgm | no: line 1: `CREATE INDEX t_pad_trgm ON t USING gin"),
        "{md}"
    );
}

#[test]
fn session_settings_of_a_variant_run_in_the_screening_session() {
    let r = screened();
    // `SET search_path = pg_catalog` first: HypoPG's functions are still found, and the
    // index lands on public.t, as the real build's does.
    let v = variant(r, "id-brin");
    assert!(v.screenable, "{:?}", v.reason);
    assert_eq!(v.indexes.len(), 1);
    assert_eq!(v.indexes[0].method, "brin");
    assert_eq!(v.indexes[0].declared.as_deref(), Some("public.t_id_brin"));
    let e = screening::index_estimates(r);
    let brin = e.iter().find(|e| e.variant == "id-brin").unwrap();
    assert_eq!(brin.real.map(|x| x.name.as_str()), Some("public.t_id_brin"));
    // The estimates of the next variants were made under the reference settings again.
    let plan = screened_cell(r, "grp-index", "range", "p1")
        .plan
        .as_ref()
        .unwrap();
    assert!(
        plan.settings.iter().all(|(k, _)| k != "search_path"),
        "{plan:?}"
    );
}

#[test]
fn prepared_queries_are_screened_with_explain_execute() {
    let r = screened();
    for v in ["plain", "id-index", "id-brin", "grp-index"] {
        let c = screened_cell(r, v, "by-k", "p1");
        assert_eq!(c.error, None, "{v}");
        let plan = c.plan.as_ref().unwrap();
        assert!(
            plan.index_names.iter().any(|n| n == "t_k"),
            "{v}: {}",
            plan.signature
        );
        assert!(!c.uses_hypothetical, "{v}: the index on k serves by-k");
    }
}

#[test]
fn screening_never_touches_the_base() {
    let r = screened();
    let server = server();
    let mut base = pgx::target::connect(&server.cluster().config(&r.dataset.database)).unwrap();
    let installed: i64 = base
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(installed, 0, "HypoPG lives only in the screening copy");
}

#[test]
fn screen_only_builds_and_measures_nothing() {
    let _serial = serial();
    let (_server, mut admin) = admin();
    // This experiment's cached variant builds (other areas' runs build their own).
    let cached = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgx_variant_%' \
                 AND shobj_description(oid, 'pg_database') LIKE '%\"experiment\":\"screen\"%'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let before = cached(&mut admin);
    let r = run_locked(RunOptions {
        screen_only: true,
        rebuild: false,
        only: vec!["id-index".into(), "pad-trgm".into()],
        ..Default::default()
    });
    assert_eq!(cached(&mut admin), before, "no variant build was cached");
    assert!(r.cells.is_empty());
    assert!(
        r.variants
            .iter()
            .all(|v| v.relations.is_empty() && v.statements.is_empty())
    );
    let s = r.screening.as_ref().unwrap();
    assert!(s.only);
    assert!(variant(&r, "id-index").screenable && !variant(&r, "pad-trgm").screenable);
    assert!(screened_cell(&r, "id-index", "range", "p1").uses_hypothetical);
    let md = markdown::render(&r);
    assert!(
        md.starts_with("# Experiment `screen`: screening only"),
        "{md}"
    );
    assert!(md.contains("## Screening (what-if, HypoPG)"));
    assert!(
        !md.contains("## Queries") && !md.contains("real size"),
        "{md}"
    );
    assert!(pgx::experiment::failures(&r).is_empty());
}

#[test]
fn a_cache_axis_gets_one_estimate_per_query_form_and_parameters() {
    let _serial = serial();
    // The fixture with a cache axis, screened only (nothing cold is measured).
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(fixture())
        .unwrap()
        .replace("name: screen\n", "name: screen-cache\n")
        .replace("screen: true\n", "screen: true\ncache: [warm, cold]\n");
    let path = dir.path().join("screen-cache.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (_server, target) = target();
    let spec = spec::read(&path).unwrap();
    let options = RunOptions {
        screen_only: true,
        only: vec!["id-index".into()],
        ..Default::default()
    };
    let r = pgx::experiment::run(&target, &spec, &options, &mut Progress::quiet()).unwrap();
    let cells = &r.screening.as_ref().unwrap().cells;
    let mut keys: Vec<_> = cells
        .iter()
        .map(|c| (&c.variant, &c.query, &c.form, &c.params))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no estimate twice");
    assert_eq!(n, 2 * 3, "plain and id-index × range p1, p2 and by-k");
    assert!(cells.iter().all(|c| c.cache == "warm"));
}

#[test]
fn without_hypopg_the_run_works_and_says_how_to_install_it() {
    let _serial = serial();
    let db = TestDb::new("screen_missing");
    let out = tempfile::tempdir().unwrap();
    let major: i32 = db
        .client()
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .unwrap()
        .get(0);
    let fixture = fixture();
    let run = pgx_command(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env("DATABASE_URL", db.url())
        // A name no server has: pg_available_extensions has no such row, as on a server
        // without the package.
        .env(screen::EXTENSION_ENV, "hypopg_not_installed_here")
        .args(["experiment", fixture.to_str().unwrap(), "--screen"])
        .args(["--only", "id-index", "--repeat", "3", "--warmup", "1"])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let (out_text, err_text) = (stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(0), "{out_text}\n{err_text}");
    let install = format!("apt-get install postgresql-{major}-hypopg");
    assert!(
        err_text.contains("warning: screening skipped") && err_text.contains(&install),
        "{err_text}"
    );
    let md = std::fs::read_to_string(out.path().join("screen.md")).unwrap();
    assert!(md.contains("## Screening (what-if, HypoPG)"), "{md}");
    assert!(
        md.contains("HypoPG is not installed") && md.contains(&install),
        "{md}"
    );
    assert!(md.contains("## Queries"), "the real run went on");
    let json: ExperimentResult =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("screen.json")).unwrap())
            .unwrap();
    let s = json.screening.unwrap();
    assert!(s.unavailable.is_some() && s.cells.is_empty());
    assert!(
        json.cells
            .iter()
            .any(|c| c.variant == "id-index" && c.execution.is_some())
    );

    // Screening only, still without HypoPG: the same message, exit 0, a report of its
    // own next to the run's (which it leaves alone).
    let before = std::fs::read_to_string(out.path().join("screen.md")).unwrap();
    let only = pgx_command(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env("DATABASE_URL", db.url())
        .env(screen::EXTENSION_ENV, "hypopg_not_installed_here")
        .args(["experiment", fixture.to_str().unwrap(), "--screen-only"])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(only.status.code(), Some(0), "{}", stderr(&only));
    assert!(stderr(&only).contains(&install), "{}", stderr(&only));
    let md = std::fs::read_to_string(out.path().join("screen-screen.md")).unwrap();
    assert!(
        md.contains("screening only") && md.contains("HypoPG is not installed"),
        "{md}"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("screen.md")).unwrap(),
        before
    );
}

/// Ctrl-C while a screening EXPLAIN runs (planning made slow on purpose: an immutable
/// function the planner folds sleeps): the statement is cancelled, the screening copy
/// dropped, exit 130.
#[test]
fn ctrl_c_during_screening_cancels_it_and_drops_the_copy() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let _serial = serial();
    let db = TestDb::new("screen_sigint");
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: screen-sigint\n\
        schema:\n  migrations: tests/fixtures/no-migrations\n\
        dataset:\n  scale: 1\n  steps:\n    - name: t\n      sql: |\n        CREATE TABLE t AS SELECT g::bigint AS id FROM generate_series(1, 100) g;\n        CREATE FUNCTION slow_key() RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(60); RETURN 1; END $$;\n\
        baseline: plain\nvariants:\n  plain: {}\n  id-index:\n    sql: CREATE INDEX t_id ON t (id);\n\
        queries:\n  slow-plan:\n    sql: SELECT count(*) FROM t WHERE id = slow_key()\n\
        runs: { warmup: 0, repeat: 1, timeout: 120s }\n";
    let path = dir.path().join("screen-sigint.yaml");
    std::fs::write(&path, yaml).unwrap();
    let child = pgx_command(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env("DATABASE_URL", db.url())
        .args([
            "experiment",
            path.to_str().unwrap(),
            "--screen-only",
            "--out",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut admin = db.client();
    let running = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'pgx_run_screen_sigint_%' \
                 AND query LIKE 'EXPLAIN%slow_key%' AND state = 'active'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while running(&mut admin) == 0 {
        assert!(Instant::now() < deadline, "the screening EXPLAIN never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let copies = count_databases(&mut admin, "^pgx_run_screen_sigint_");
    assert_eq!(copies, 0, "the screening copy is dropped");
    assert_eq!(running(&mut admin), 0, "the EXPLAIN was cancelled");
}
