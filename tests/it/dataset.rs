//! The dataset build: the bulk-load path gives exactly the rows, indexes and constraints
//! of the plain path; parallel steps give the same rows on any number of connections;
//! a failed build leaves nothing behind and says what happened; the build and in-use
//! locks hold across pgx processes pointed at different databases.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use pgx::experiment::databases::{Base, prepare_base_with};
use pgx::experiment::dataset::LoadOptions;
use pgx::experiment::spec::{self, Spec};
use pgx::target::Target;

fn project() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn experiment(name: &str) -> Spec {
    spec::read(&project().join("experiments").join(format!("{name}.yaml"))).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    project().join("tests/fixtures/experiments").join(name)
}

fn target(server: &pgx::cluster::ClusterUse, dbname: &str) -> Target {
    Target::External(server.cluster().config(dbname))
}

fn build(target: &Target, spec: &Spec, scale: f64, connections: Option<usize>) -> Base {
    try_build(target, spec, scale, connections).unwrap()
}

fn try_build(
    target: &Target,
    spec: &Spec,
    scale: f64,
    connections: Option<usize>,
) -> anyhow::Result<Base> {
    let mut admin = pgx::target::connect(&target.admin_config())?;
    prepare_base_with(
        target,
        &mut admin,
        spec,
        scale,
        true,
        &LoadOptions { connections },
        &mut |_, _| {},
    )
}

/// Per user table: row count and an md5 over its rows in a fixed (sorted) order.
fn rows(server: &pgx::cluster::ClusterUse, dbname: &str) -> Vec<String> {
    let mut client = pgx::target::connect(&server.cluster().config(dbname)).unwrap();
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_%' AND c.relname <> 'refinery_schema_history' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .iter()
        .map(|t| {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), md5(coalesce(string_agg(md5(x::text), '' ORDER BY x::text), '')) FROM {t} AS x"
                    ),
                    &[],
                )
                .unwrap();
            format!("{t} {} {}", row.get::<_, i64>(0), row.get::<_, String>(1))
        })
        .collect()
}

/// Every index and constraint with its definition, name, validity and place in its
/// partition tree.
fn catalog(server: &pgx::cluster::ClusterUse, dbname: &str) -> Vec<String> {
    let mut client = pgx::target::connect(&server.cluster().config(dbname)).unwrap();
    client
        .query(
            "SELECT format('index %s %s %s valid=%s primary=%s unique=%s clustered=%s replident=%s parent=%s comment=%s',
                       i.indrelid::regclass, ic.relname, pg_get_indexdef(ic.oid), i.indisvalid, i.indisprimary,
                       i.indisunique, i.indisclustered, i.indisreplident,
                       (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent WHERE h.inhrelid = ic.oid),
                       obj_description(ic.oid, 'pg_class'))
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
             UNION ALL
             SELECT format('constraint %s %s %s type=%s validated=%s deferrable=%s/%s local=%s inherited=%s parent=%s index=%s comment=%s',
                       c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid), c.contype, c.convalidated,
                       c.condeferrable, c.condeferred, c.conislocal, c.coninhcount,
                       (SELECT p.conname FROM pg_constraint p WHERE p.oid = c.conparentid),
                       c.conindid::regclass, obj_description(c.oid, 'pg_constraint'))
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
             UNION ALL
             SELECT format('table %s replica_identity=%s', c.oid::regclass, c.relreplident)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn plain(spec: &Spec) -> Spec {
    let mut plain = spec.clone();
    plain.dataset.bulk = false;
    plain
}

/// Build `spec` on both paths (the bulk one over three connections, more than the
/// chunks of some steps and than CI's cores) and compare.
fn assert_same_dataset(spec: &Spec, scale: f64) -> (Base, Base) {
    let server = server();
    let target = target(&server, "postgres");
    // Both bases stay in use while compared, so neither build drops the other as stale.
    let bulk = build(&target, spec, scale, Some(3));
    let plain = build(&target, &plain(spec), scale, None);
    assert_eq!(bulk.info.load.path, "bulk");
    assert_eq!(plain.info.load.path, "plain");
    assert!(
        bulk.info.load.indexes > 0,
        "the bulk path rebuilt the indexes"
    );
    let (b, p) = (&bulk.info.database, &plain.info.database);
    assert_ne!(b, p);
    let bulk_rows = rows(&server, b);
    assert!(
        bulk_rows.iter().any(|r| !r.contains(" 0 ")),
        "the dataset has rows"
    );
    assert_eq!(bulk_rows, rows(&server, p), "same rows on both paths");
    assert_eq!(
        catalog(&server, b),
        catalog(&server, p),
        "same indexes and constraints"
    );
    (bulk, plain)
}

#[test]
fn index_strategies_bulk_and_plain_paths_build_the_same_dataset() {
    let spec = experiment("index-strategies");
    let (bulk, _plain) = assert_same_dataset(&spec, 0.001);
    let server = server();
    let mut client = pgx::target::connect(&server.cluster().config(&bulk.info.database)).unwrap();
    // The visibility map is set (the covering variant's Index Only Scan needs it).
    client
        .batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .unwrap();
    let plan: pgx::db::RawText = client
        .query_one(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT parentdocumentid FROM dms.reference \
             WHERE parentdocumentpartitionkey = 3 AND parentdocumentid > 0",
            &[],
        )
        .unwrap()
        .get(0);
    drop(client);
    // A partition cannot be loaded with COPY FREEZE through its parent: it is vacuumed,
    // which sets the visibility map (not the frozen bits).
    let (pages, visible, _) = visibility(&server, &bulk.info.database, "dms.reference_09");
    assert!(plan.0.contains("Index Only Scan"), "{}", plan.0);
    assert!(
        plan.0.contains("\"Heap Fetches\": 0"),
        "{} pages {pages}, visible {visible}",
        plan.0
    );
    assert!(pages > 0);
    assert_eq!(visible, pages);
}

#[test]
fn tag_filtering_bulk_and_plain_paths_build_the_same_dataset() {
    let spec = experiment("tag-filtering");
    let (bulk, _plain) = assert_same_dataset(&spec, 0.001);
    let server = server();
    let mut client = pgx::target::connect(&server.cluster().config(&bulk.info.database)).unwrap();
    // The junction was loaded with COPY FREEZE and is not vacuumed after it: its pages
    // are all-frozen (which only FREEZE does to rows this young) and all-visible, so an
    // Index Only Scan reads no heap page. dms-style partitioned targets cannot be loaded
    // with FREEZE; they are vacuumed (see index_strategies_...).
    let vacuumed: i64 = client
        .query_one(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'content.content_tags'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(vacuumed, 0, "no VACUUM needed after COPY FREEZE");
    drop(client);
    let (pages, visible, frozen) = visibility(&server, &bulk.info.database, "content.content_tags");
    let mut client = pgx::target::connect(&server.cluster().config(&bulk.info.database)).unwrap();
    assert!(pages > 0);
    assert_eq!((visible, frozen), (pages, pages));
    client
        .batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .unwrap();
    let plan: pgx::db::RawText = client
        .query_one(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT tag_id, content_id FROM content.content_tags \
             WHERE tag_id = 'dfbb88fc-3c31-468f-a2d7-99605206c985'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(plan.0.contains("Index Only Scan"), "{}", plan.0);
    assert!(plan.0.contains("\"Heap Fetches\": 0"), "{}", plan.0);
}

/// (pages, all-visible pages, all-frozen pages) of a table, read with pg_visibility in a
/// copy of the base (the base itself stays as pgx built it).
fn visibility(server: &pgx::cluster::ClusterUse, base: &str, table: &str) -> (i64, i64, i64) {
    let copy = format!("{base}_vm");
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {copy}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {base}"))
        .unwrap();
    let mut client = pgx::target::connect(&server.cluster().config(&copy)).unwrap();
    client
        .batch_execute("CREATE EXTENSION pg_visibility")
        .unwrap();
    let row = client
        .query_one(
            "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::int8, \
                    all_visible, all_frozen FROM pg_visibility_map_summary($1::text::regclass)",
            &[&table],
        )
        .unwrap();
    let out = (row.get(0), row.get(1), row.get(2));
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {copy} WITH (FORCE)"))
        .unwrap();
    out
}

#[test]
fn every_kind_of_index_and_constraint_comes_back_and_random_rows_do_not_depend_on_connections() {
    let server = server();
    let target = target(&server, "postgres");
    let spec = spec::read(&fixture("bulk.yaml")).unwrap();
    let (bulk, plain) = assert_same_dataset(&spec, 1.0);
    let reference = rows(&server, &plain.info.database);
    drop(bulk);
    // One connection, then four: the same rows (chunks, and their seeds, are fixed).
    let mut last = None;
    for connections in [1, 4] {
        // The previous build of the same base is no longer in use: it can be rebuilt.
        drop(last.take());
        let again = build(&target, &spec, 1.0, Some(connections));
        assert_eq!(
            rows(&server, &again.info.database),
            reference,
            "{connections} connections"
        );
        last = Some(again);
    }
    let again = last.unwrap();
    let again_name = again.info.database.clone();
    // The chunks were written in order: customers' rows only grow, so none can land in
    // an earlier page's free space, and ctid order is exactly id order.
    let mut bulk_client = pgx::target::connect(&server.cluster().config(&again_name)).unwrap();
    let back: i64 = bulk_client
        .query_one(
            "SELECT count(*) FROM (SELECT id < lag(id) OVER (ORDER BY ctid) AS back FROM shop.customer) x WHERE back",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(back, 0);
    let count: i64 = bulk_client
        .query_one("SELECT count(*) FROM shop.customer", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 3500, "the appending step kept the rows before it");
    // random() did run: the scores are not all equal.
    let mut client = pgx::target::connect(&server.cluster().config(&plain.info.database)).unwrap();
    let distinct: i64 = client
        .query_one("SELECT count(DISTINCT score) FROM shop.customer", &[])
        .unwrap()
        .get(0);
    assert!(distinct > 1000, "{distinct}");
}

fn base_exists(server: &pgx::cluster::ClusterUse, name: &str) -> bool {
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_some()
}

/// The name pgx gives the base of `spec` at `scale` (its content hash).
fn base_name(server: &pgx::cluster::ClusterUse, spec: &Spec, scale: f64) -> String {
    let migrations: Vec<_> = pgx::migrate::load_dir(&project().join(&spec.schema.migrations))
        .unwrap()
        .into_iter()
        .filter(|f| spec.schema.up_to.is_none_or(|v| f.version <= v))
        .collect();
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    let version: String = admin
        .query_one("SELECT current_setting('server_version_num')", &[])
        .unwrap()
        .get(0);
    let key = pgx::experiment::databases::cache_key(spec, scale, &migrations, &version).unwrap();
    format!("pgx_base_{key}")
}

/// Complete bases built for an experiment.
fn bases_of(server: &pgx::cluster::ClusterUse, experiment: &str) -> Vec<String> {
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    admin
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'pgx_base_%' \
             AND shobj_description(oid, 'pg_database') LIKE '%\"built_for\":\"' || $1 || '\"%'",
            &[&experiment],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn with_steps(name: &str, steps: &str) -> (tempfile::TempDir, Spec) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.yaml"));
    let yaml = std::fs::read_to_string(fixture("bulk.yaml"))
        .unwrap()
        .replace("name: bulk", &format!("name: {name}"));
    let (head, _) = yaml.split_once("  steps:\n").unwrap();
    let (_, tail) = yaml.split_once("baseline: plain").unwrap();
    std::fs::write(
        &path,
        format!("{head}  steps:\n{steps}baseline: plain{tail}"),
    )
    .unwrap();
    let spec = spec::read(&path).unwrap();
    (dir, spec)
}

#[test]
fn a_failing_step_or_a_full_disk_leaves_no_base_behind_and_says_what_happened() {
    let server = server();
    let target = target(&server, "postgres");
    let customers = "    - name: customers\n      parallel: { range: [1, 100] }\n      sql: INSERT INTO shop.customer SELECT g, 'c' || g, 1, 0 FROM generate_series({{lo}}, {{hi}}) g;\n";
    let cases = [
        (
            "fails-sequential",
            format!(
                "{customers}    - name: broken\n      sql: |\n        INSERT INTO shop.slot (id, span)\n        SELECT g, int4range(g, g + 1) FROM generate_series(1, 10) g\n        WHERE no_such_column;\n"
            ),
            vec!["dataset step \"broken\"", "no_such_column", "line 3"],
        ),
        (
            "fails-parallel",
            format!(
                "{customers}    - name: orders\n      parallel: {{ range: [1, 1000], chunks: 4 }}\n      sql: |\n        INSERT INTO shop.orders (id, customer_id, placed, amount)\n        SELECT g, 1, date '2024-01-01', 1 / (g - 600) FROM generate_series({{{{lo}}}}, {{{{hi}}}}) g;\n"
            ),
            vec!["dataset step \"orders\" (chunk 3 of 4", "division by zero"],
        ),
        (
            "fails-parallel-typo",
            format!(
                "{customers}    - name: orders\n      parallel: {{ range: [1, 1000], chunks: 4 }}\n      sql: |\n        INSERT INTO shop.orders (id, customer_id, placed, amount)\n        SELECT g, 1, date '2024-01-01', amount_typo\n        FROM generate_series({{{{lo}}}}, {{{{hi}}}}) g;\n"
            ),
            vec![
                "dataset step \"orders\"",
                "amount_typo",
                "at line 2, column 33",
            ],
        ),
        (
            "disk-full-parallel",
            format!(
                "{customers}    - name: orders\n      parallel: {{ range: [1, 1000], chunks: 4 }}\n      sql: |\n        INSERT INTO shop.orders (id, customer_id, placed, amount)\n        SELECT g, 1, date '2024-01-01', pgx_test_fill(g) FROM generate_series({{{{lo}}}}, {{{{hi}}}}) g;\n"
            ),
            vec!["ran out of disk space", "No space left on device"],
        ),
        (
            "disk-full-sequential",
            format!("{customers}    - name: fill\n      sql: SELECT pgx_test_fill(700);\n"),
            vec!["ran out of disk space", "No space left on device"],
        ),
    ];
    // What PostgreSQL raises when a file cannot grow (SQLSTATE 53100), from inside a
    // step, so the test needs no tiny file system.
    let fill = "    - name: disk\n      sql: |\n        CREATE FUNCTION pgx_test_fill(g bigint) RETURNS numeric LANGUAGE plpgsql AS $$\n        BEGIN\n            IF g >= 600 THEN\n                RAISE EXCEPTION 'could not extend file \"base/16384/16385.1\": No space left on device'\n                    USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';\n            END IF;\n            RETURN g;\n        END $$;\n";
    for (name, steps, expected) in cases {
        let steps = if name.starts_with("disk") {
            format!("{fill}{steps}")
        } else {
            steps
        };
        let (_dir, spec) = with_steps(name, &steps);
        let err = try_build(&target, &spec, 1.0, Some(2))
            .err()
            .unwrap_or_else(|| panic!("{name} built"));
        let text = format!("{err:#}");
        for needle in expected {
            assert!(text.contains(needle), "{name}: {needle:?} not in {text}");
        }
        assert!(
            text.contains("was dropped"),
            "{name}: says the half-built base is gone: {text}"
        );
        if name.starts_with("disk") {
            let hint = pgx::error::hint_of(&err).unwrap_or_default();
            assert!(hint.contains("free disk space"), "{name}: {hint}");
        }
        assert!(
            !base_exists(&server, &base_name(&server, &spec, 1.0)),
            "{name}: no half-built base left"
        );
    }
}

#[test]
fn ctrl_c_during_a_parallel_step_stops_and_drops_the_half_built_base() {
    let server = server();
    let steps = "    - name: slow\n      parallel: { range: [1, 8], chunks: 8 }\n      sql: |\n        INSERT INTO shop.slot (id, span)\n        SELECT g, int4range(g, g + 1) FROM generate_series({{lo}}, {{hi}}) g, pg_sleep(60);\n";
    let (dir, spec) = with_steps("interrupted-build", steps);
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT
    );
    let child = pgx_command(project())
        .env("DATABASE_URL", &url)
        .args([
            "experiment",
            spec.path.to_str().unwrap(),
            "--dataset-only",
            "--rebuild",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sleeping: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgx dataset' AND query LIKE 'COPY%pg_sleep%'",
                &[],
            )
            .unwrap()
            .get(0);
        if sleeping >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the generators never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "Ctrl-C cancels the generators"
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        !base_exists(&server, &base_name(&server, &spec, 1.0)),
        "no half-built base left"
    );
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgx dataset' AND query LIKE 'COPY%pg_sleep%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no generator left running");
    drop(dir);
}

/// Advisory locks belong to a database: two pgx processes whose DATABASE_URLs name
/// different databases must still see each other's build and in-use locks.
#[test]
fn build_and_in_use_locks_hold_across_admin_databases() {
    let server = server();
    let (a, b) = (TestDb::new("locks_a"), TestDb::new("locks_b"));
    let (target_a, target_b) = (target(&server, &a.name), target(&server, &b.name));
    let (_dir, spec) = with_steps(
        "locks",
        "    - name: slow\n      sql: SELECT pg_sleep(2);\n",
    );

    // The build lock: B asks for the base A is building, waits, and reuses it.
    let builder = std::thread::spawn({
        let spec = spec.clone();
        move || build(&target_a, &spec, 1.0, None)
    });
    let name = base_name(&server, &spec, 1.0);
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sleeping: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'SELECT pg_sleep(2)%'",
                &[&name],
            )
            .unwrap()
            .get(0);
        if sleeping > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "A never started building");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut admin_b = pgx::target::connect(&target_b.admin_config()).unwrap();
    let waited = prepare_base_with(
        &target_b,
        &mut admin_b,
        &spec,
        1.0,
        false,
        &LoadOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let built = builder.join().expect("A's build succeeded");
    assert!(waited.info.reused, "B waited for A's build and reused it");
    assert_eq!(waited.info.database, built.info.database);

    // The in-use lock: while A uses the base, B building a changed definition (same
    // experiment, same scale: the old base is stale) must not drop it.
    let (_dir2, changed) = with_steps("locks", "    - name: other\n      sql: SELECT 1;\n");
    let target_b = target(&server, &b.name);
    drop(waited);
    let newer = build(&target_b, &changed, 1.0, None);
    assert!(
        base_exists(&server, &built.info.database),
        "a base in use (through another database's connection) is kept"
    );
    drop(built);
    drop(newer);
    let newest = build(&target_b, &changed, 1.0, None);
    let stale: Vec<String> = bases_of(&server, "locks")
        .into_iter()
        .filter(|n| *n != newest.info.database)
        .collect();
    assert_eq!(stale, Vec::<String>::new(), "stale and unused: dropped");
}

#[test]
fn parallel_step_mistakes_are_reported_with_file_line_and_column() {
    let base = std::fs::read_to_string(fixture("bulk.yaml")).unwrap();
    let cases = [
        // {{lo}} without a range to split.
        (
            base.replace("parallel: { range: [1, \"{{customers}}\"], chunks: 7 }", "parallel: true"),
            "has no parallel.range",
        ),
        // Neither bounds nor a chunk number: every chunk would insert everything.
        (
            base.replace("WHERE g % {{chunks}} = {{chunk}} ORDER BY g", "ORDER BY g"),
            "every chunk would insert every row",
        ),
        // Chunk placeholders outside a parallel step.
        (
            base.replace(
                "sql: CREATE TABLE shop.summary AS",
                "sql: SELECT {{lo}}; CREATE TABLE shop.summary AS",
            ),
            "only defined in parallel steps",
        ),
        (base.replace("chunks: 7", "chunks: 0"), "parallel.chunks must be 1 to 100000"),
        // Streamed through COPY on the bulk path: one INSERT ... SELECT.
        (
            base.replace(
                "        FROM generate_series({{lo}}, {{hi}}) AS g ORDER BY g;\n    # Into",
                "        FROM generate_series({{lo}}, {{hi}}) AS g ORDER BY g\n        ON CONFLICT DO NOTHING;\n    # Into",
            ),
            "ON CONFLICT and RETURNING cannot be streamed through COPY",
        ),
        (
            base.replace("vars: { customers: 3000", "vars: { lo: 1, customers: 3000"),
            "reserved for the chunks",
        ),
    ];
    let located = regex::Regex::new(r"^bulk\.yaml:\d+:\d+: ").unwrap();
    for (yaml, expected) in cases {
        let err = spec::parse(Path::new("bulk.yaml"), &yaml).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(expected), "{expected:?} not in {text}");
        assert!(located.is_match(&text), "located: {text}");
        assert!(pgx::error::hint_of(&err).is_some(), "with a hint: {text}");
    }
}

/// Issue 23: experiment files written before the bulk-load path drop (or drop and re-add)
/// a foreign key in a step. On the bulk path the key is already gone, and the referenced
/// primary key too: the error says that the bulk path dropped them, names the key, and
/// what to do; with `dataset.bulk: false` the same steps build.
#[test]
fn an_old_style_step_on_an_object_the_bulk_path_dropped_says_so_through_the_binary() {
    let db = TestDb::new("old_style_steps");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    std::fs::write(
        project.path().join("migrations/V1__app.sql"),
        "CREATE SCHEMA app;\n\
         CREATE TABLE app.document (id bigint PRIMARY KEY, title text NOT NULL);\n\
         CREATE TABLE app.alias (id bigint PRIMARY KEY, document_id bigint NOT NULL,\n\
           CONSTRAINT fk_alias_document FOREIGN KEY (document_id) REFERENCES app.document (id));\n\
         CREATE INDEX alias_document ON app.alias (document_id);\n",
    )
    .unwrap();
    let load = [
        "    - name: documents",
        "      sql: INSERT INTO app.document SELECT g, 't' || g FROM generate_series(1, 100) g;",
        "    - name: aliases",
        "      sql: INSERT INTO app.alias SELECT g, g FROM generate_series(1, 100) g;\n",
    ]
    .join("\n");
    let cases = [
        (
            "old-drop",
            "    - name: drop-fk\n      sql: ALTER TABLE app.alias DROP CONSTRAINT fk_alias_document;\n"
                .to_string(),
            "does not exist",
        ),
        (
            "old-readd",
            "    - name: readd-fk\n      sql: |\n        ALTER TABLE app.alias DROP CONSTRAINT IF EXISTS fk_alias_document;\n        ALTER TABLE app.alias ADD CONSTRAINT fk_alias_document FOREIGN KEY (document_id) REFERENCES app.document (id);\n"
                .to_string(),
            "no unique constraint matching given keys",
        ),
    ];
    for (name, old_step, server_says) in &cases {
        for bulk in [true, false] {
            let yaml = format!(
                "name: {name}\ndataset:\n  scale: 1\n  bulk: {bulk}\n  steps:\n{load}{old_step}\
                 baseline: plain\nvariants:\n  plain: {{}}\n\
                 queries:\n  q:\n    sql: SELECT count(*) FROM app.alias\n\
                 runs: {{ warmup: 0, repeat: 1, rounds: 1, control: false }}\n"
            );
            let path = project.path().join(format!("{name}.yaml"));
            std::fs::write(&path, yaml).unwrap();
            let out = db.pgx(
                project.path(),
                &[
                    "experiment",
                    path.to_str().unwrap(),
                    "--out",
                    project.path().to_str().unwrap(),
                ],
            );
            let err = stderr(&out);
            if !bulk {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{name} with bulk: false builds: {err}"
                );
                continue;
            }
            assert_eq!(out.status.code(), Some(2), "{name}: {err}");
            assert!(err.contains(server_says), "{name}: {err}");
            assert!(
                err.contains(
                    "the bulk-load path (dataset.bulk, default true) dropped the migrations' indexes, keys and foreign keys before the steps"
                ) && err.contains("— fk_alias_document")
                    && err.contains("among them — and rebuilds them after"),
                "{name}: {err}"
            );
            assert!(
                err.contains("remove the steps") && err.contains("`dataset.bulk: false`"),
                "{name}: {err}"
            );
            assert!(!err.contains("fix the step's SQL"), "{name}: {err}");
        }
    }
}

/// Issue 23: the disk-full hint names the data directory in use (`--data-dir`), not the
/// default target/pgx-cluster.
#[test]
fn the_disk_full_hint_names_the_data_dir_in_use() {
    let own = OwnCluster::new("disk-full-hint");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    // What PostgreSQL raises when a file cannot grow (SQLSTATE 53100), from a step.
    let yaml = [
        "name: disk-full-hint",
        "dataset:",
        "  steps:",
        "    - name: fill",
        "      sql: |",
        "        DO $$ BEGIN",
        "          RAISE EXCEPTION 'could not extend file \"base/1/2\": No space left on device'",
        "            USING ERRCODE = 'disk_full';",
        "        END $$;",
        "baseline: plain",
        "variants:",
        "  plain: {}",
        "queries:",
        "  q:",
        "    sql: SELECT 1",
        "",
    ]
    .join("\n");
    let path = project.path().join("disk-full-hint.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = pgx_command(project.path())
        .arg("--data-dir")
        .arg(&own.0)
        .args(["experiment", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ran out of disk space"), "{err}");
    let cluster = pgx::cluster::Cluster::new(&own.0).unwrap();
    assert!(
        err.contains(&format!(
            "hint: free disk space on the file system of {} (the embedded cluster's data directory, --data-dir",
            cluster.root.display()
        )),
        "{err}"
    );
    assert!(!err.contains("target/pgx-cluster"), "{err}");
}
