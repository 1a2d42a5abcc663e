//! Datasets copied from an existing database: the experiment runs on real rows, and the
//! source is never written to.

use crate::common::*;
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::target::Target;

fn fingerprint(client: &mut postgres::Client) -> (i64, String, i64) {
    let row = client
        .query_one(
            "SELECT count(*), md5(string_agg(o::text, '|' ORDER BY o.id)) FROM orders o",
            &[],
        )
        .unwrap();
    let relations: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
            &[],
        )
        .unwrap()
        .get(0);
    (row.get(0), row.get(1), relations)
}

fn experiment(dataset: &str) -> String {
    format!(
        "name: from-source\nabout: a copy of an existing database\n{dataset}\nbaseline: plain\nvariants:\n  plain: {{}}\n  by-customer:\n    sql: CREATE INDEX orders_customer ON orders (customer);\nqueries:\n  customer:\n    sql: SELECT count(*) FROM orders WHERE customer = $1\n    params: [[7]]\nruns: {{ warmup: 1, repeat: 6, timeout: 10s }}\n"
    )
}

#[test]
fn an_experiment_runs_on_a_copy_of_a_database_and_leaves_the_source_as_it_was() {
    let source = TestDb::new("source_orders");
    let mut client = source.client();
    client
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer int, total numeric);
             INSERT INTO orders SELECT g, g % 500, g * 1.5 FROM generate_series(1, 50000) g;",
        )
        .unwrap();
    let before = fingerprint(&mut client);
    drop(client);

    let server = source.server.clone();
    let target = Target::External(server.cluster().config("postgres"));
    let dir = tempfile::tempdir().unwrap();
    let run = |dataset: &str, file: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, experiment(dataset)).unwrap();
        let spec = spec::read(&path).unwrap();
        pgx::experiment::run(
            &target,
            &spec,
            &RunOptions::default(),
            &mut Progress::quiet(),
        )
    };

    let r = run(
        &format!("dataset:\n  from_database: {}", source.name),
        "same-server.yaml",
    )
    .unwrap();
    assert_eq!(
        r.dataset.row_counts,
        vec![("public.orders".to_string(), 50000)],
        "the copy has the source's rows"
    );
    let indexed = r.cells.iter().find(|c| c.variant == "by-customer").unwrap();
    assert!(
        indexed
            .plan
            .as_ref()
            .unwrap()
            .index_names
            .contains(&"orders_customer".to_string()),
        "the variant ran on the copied rows: {:?}",
        indexed.plan
    );
    assert_eq!(
        fingerprint(&mut source.client()),
        before,
        "rows, their checksum and the relations of the source are unchanged"
    );

    // Someone connected to the source: PostgreSQL cannot copy it, and pgx says why.
    let held = source.client();
    let path = dir.path().join("held.yaml");
    std::fs::write(
        &path,
        experiment(&format!("dataset:\n  from_database: {}", source.name)),
    )
    .unwrap();
    let spec = spec::read(&path).unwrap();
    let err = pgx::experiment::prepare_dataset(
        &target,
        &spec,
        &RunOptions {
            rebuild: true,
            ..Default::default()
        },
        &mut Progress::quiet(),
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("other connection"), "{message}");
    drop(held);

    // Another server (here: the same one reached by URL), through pg_dump / pg_restore.
    let url = format!(
        "host={} port={} user=postgres dbname={}",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT,
        source.name
    );
    let r = run(&format!("dataset:\n  from_url: \"{url}\""), "by-url.yaml").unwrap();
    assert_eq!(
        r.dataset.row_counts,
        vec![("public.orders".to_string(), 50000)]
    );
    assert!(
        r.dataset
            .steps
            .iter()
            .any(|s| s.label == "pg_dump | pg_restore")
    );
    assert_eq!(fingerprint(&mut source.client()), before);
}
