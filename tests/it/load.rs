//! The load driver against real PostgreSQL: its counts are checked against the server's
//! own statistics, its timeouts against a server that sleeps or stops answering.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TestDb;
use pgx::loadtest::generate::Source;
use pgx::loadtest::result::{new_histogram, percentile_us, percentiles};
use pgx::loadtest::{LoadResult, LoadSpec, run};

/// Load tests share two cores: one at a time keeps their timings meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

fn spec(yaml: &str) -> LoadSpec {
    serde_saphyr::from_str(yaml).expect("test spec parses")
}

fn load(config: &postgres::Config, spec: &LoadSpec) -> LoadResult {
    run(config, spec, &[], &mut |_| {}).expect("load runs")
}

fn admin(db: &TestDb) -> postgres::Client {
    pgx::target::connect(&db.server.cluster().config("postgres")).unwrap()
}

/// Backends flush their statistics when they exit (PostgreSQL 15 otherwise flushes at
/// most once a second): wait until no client backend of `db` is left, then until the
/// counter stops moving, reading from another database so the reads do not count.
fn settled_xact_commit(db: &TestDb) -> i64 {
    let mut admin = admin(db);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        assert!(Instant::now() < deadline, "statistics never settled");
        let backends: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
                &[&db.name],
            )
            .unwrap()
            .get(0);
        // A new snapshot each time: stats_fetch_consistency caches within a transaction.
        admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .unwrap();
        let commits: i64 = admin
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                &[&db.name],
            )
            .unwrap()
            .get(0);
        if backends == 0 && last == Some(commits) {
            return commits;
        }
        last = (backends == 0).then_some(commits);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether an autovacuum worker is in `db`: its transactions count in xact_commit too.
fn watch_autovacuum(db: &TestDb, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<bool> {
    let (mut admin, name) = (admin(db), db.name.clone());
    std::thread::spawn(move || {
        let mut seen = false;
        while !stop.load(Ordering::Relaxed) {
            seen |= admin
                .query_one(
                    "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'autovacuum worker'",
                    &[&name],
                )
                .map(|row| row.get::<_, bool>(0))
                .unwrap_or(false);
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    })
}

/// (a) Every transaction pgx reports is one the server committed, and vice versa.
///
/// Besides the script transactions (warmup + measured + late, all reported), the server
/// counts a commit for each connection's start-up (InitPostgres reads the catalog in a
/// transaction) and for each prepared statement (Parse/Describe/Sync runs in an implicit
/// transaction). pgx opens one checking connection that prepares every script statement,
/// then per client one connection preparing BEGIN, COMMIT, ROLLBACK and every statement
/// in one exchange (several Parse messages, one Sync: one implicit transaction).
/// An autovacuum worker visiting the database would add commits of its own: a watcher
/// looks for one and the measurement is repeated if it came.
#[test]
fn transaction_count_equals_xact_commit_delta() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_count");
    db.client()
        .batch_execute(
            "CREATE TABLE account (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
             INSERT INTO account (id) SELECT g FROM generate_series(1, 1000) g;",
        )
        .unwrap();
    let spec = spec(
        "clients: [1, 3]
duration: 1s
warmup: 300ms
repeat: 1
seed: 11
lock_sampling: off
scripts:
  transfer:
    weight: 1
    let: { a: {uniform: {min: 1, max: 1000}} }
    statements:
      - { sql: 'UPDATE account SET balance = balance - 1 WHERE id = $1', params: [{ref: a}] }
      - { sql: 'UPDATE account SET balance = balance + 1 WHERE id = $1 % 1000 + 1', params: [{ref: a}] }
  read:
    weight: 3
    statements:
      - { sql: 'SELECT balance FROM account WHERE id = $1', params: [{hot: {min: 1, max: 1000}}] }
",
    );
    let statements = 3;
    // Autovacuum work commits too: seen by a watcher, or (when it was too quick to be
    // seen) by the tables' autovacuum/autoanalyze counters.
    let maintenance = || -> i64 {
        let mut client = db.client();
        client
            .query_one(
                "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::bigint FROM pg_stat_user_tables",
                &[],
            )
            .unwrap()
            .get(0)
    };
    for attempt in 1..=3 {
        let counted = maintenance();
        let before = settled_xact_commit(&db);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch_autovacuum(&db, Arc::clone(&stop));
        let result = load(&db.config(), &spec);
        let after = settled_xact_commit(&db);
        stop.store(true, Ordering::Relaxed);
        let autovacuum_came = watcher.join().unwrap() || maintenance() != counted;

        let runs: Vec<_> = result.points.iter().flat_map(|p| &p.runs).collect();
        assert_eq!(runs.len(), 2);
        assert!(
            runs.iter().all(|r| r.errors == 0 && r.timeouts == 0),
            "{runs:?}"
        );
        assert_eq!(
            result.points.iter().map(|p| p.transactions).sum::<u64>(),
            runs.iter().map(|r| r.transactions).sum::<u64>()
        );
        let scripts: u64 = runs
            .iter()
            .map(|r| r.warmup_transactions + r.transactions + r.late_transactions)
            .sum();
        let connections: u64 = runs.iter().map(|r| r.connections).sum();
        assert_eq!(
            connections,
            1 + 3,
            "one connection per client, no reconnects"
        );
        // Per run, pgx reads the database's counters before and after: a connection
        // each (its start-up), one query prepared and executed (two more); the lock
        // sampler is off.
        let observers = runs.len() as u64 * 2 * 3;
        let setup = (1 + statements) + connections * (1 + 1) + observers;
        let delta = (after - before) as u64;
        if autovacuum_came && delta != scripts + setup {
            eprintln!("attempt {attempt}: an autovacuum worker visited; measuring again");
            continue;
        }
        assert_eq!(
            delta,
            scripts + setup,
            "server committed {delta}; pgx ran {scripts} script transactions + {setup} setup"
        );
        assert!(runs.iter().all(|r| r.transactions > 0));
        return;
    }
    panic!("autovacuum visited during every attempt");
}

/// (b) A statement sleeping past the timeout is a counted timeout, and the run ends on time.
#[test]
fn statement_past_the_timeout_is_a_timeout_not_a_hang() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_timeout");
    let spec = spec(
        "clients: [2]
duration: 1s
warmup: 0s
repeat: 1
timeout: 200ms
scripts:
  sleepy: { statements: [{ sql: SELECT pg_sleep(10) }] }
",
    );
    let started = Instant::now();
    let result = load(&db.config(), &spec);
    let elapsed = started.elapsed();
    let point = &result.points[0];
    eprintln!("{elapsed:?} {point:#?}");
    assert_eq!(point.transactions, 0);
    assert_eq!(point.tps_median, 0.0);
    assert_eq!(point.errors, 0, "{:?}", point.error_samples);
    // Each attempt lasts 200 ms: about 5 per client in the 1 s window.
    assert!(point.timeouts >= 6, "timeouts: {}", point.timeouts);
    assert!(
        point
            .error_samples
            .iter()
            .any(|m| m.contains("statement timeout")),
        "{:?}",
        point.error_samples
    );
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
}

/// A proxy in front of the server's socket that can stop forwarding: a hung server.
struct FreezableProxy {
    dir: tempfile::TempDir,
    frozen: Arc<AtomicBool>,
}

impl FreezableProxy {
    fn start(target: PathBuf) -> FreezableProxy {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&frozen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = UnixStream::connect(&target) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || forward(from, to, &flag));
                }
            }
        });
        FreezableProxy { dir, frozen }
    }

    fn config(&self, dbname: &str) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host_path(self.dir.path())
            .port(5432)
            .user("postgres")
            .dbname(dbname)
            .connect_timeout(Duration::from_millis(500));
        config
    }
}

/// Copy bytes until either side closes; while frozen, hold them back.
fn forward(mut from: UnixStream, mut to: UnixStream, frozen: &AtomicBool) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        while frozen.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Seed 000's "0.0 TPS, hanging": the server stops answering mid-run. pgx must report
/// timeouts and errors and return on time.
#[test]
fn hung_server_shows_up_as_timeouts_and_errors_not_a_hung_pgx() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_hung");
    let socket = db.server.cluster().socket_dir().join(".s.PGSQL.5432");
    let proxy = FreezableProxy::start(socket);
    let spec = spec(
        "clients: [2]
duration: 2s
warmup: 0s
repeat: 1
timeout: 300ms
scripts:
  read: { statements: [{ sql: SELECT 1 }] }
",
    );
    let frozen = Arc::clone(&proxy.frozen);
    let started = Instant::now();
    let result = run(&proxy.config(&db.name), &spec, &[], &mut |message| {
        if message.ends_with("connecting") {
            let frozen = Arc::clone(&frozen);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(700));
                frozen.store(true, Ordering::Relaxed);
            });
        }
    })
    .expect("a hung server is a result, not an error");
    let elapsed = started.elapsed();
    proxy.frozen.store(false, Ordering::Relaxed);
    let point = &result.points[0];
    eprintln!("{elapsed:?} {point:#?}");
    assert!(point.transactions > 0, "it worked before the freeze");
    assert!(
        point.timeouts >= 2,
        "each client's pending statement: {point:?}"
    );
    assert!(
        point
            .error_samples
            .iter()
            .any(|m| m.contains("client-side timeout")),
        "{:?}",
        point.error_samples
    );
    // Window 2 s, then at most one round-trip bound (0.5 s) for work in flight.
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
}

/// (c) Percentiles from the histogram agree with a direct nearest-rank computation.
#[test]
fn histogram_percentiles_match_nearest_rank_within_hdr_precision() {
    // A skewed, deterministic sample from 50 µs to ~5 s, like real latencies.
    let mut state = 7u64;
    let sample: Vec<u64> = (0..20_000)
        .map(|_| {
            let u = (pgx::loadtest::generate::splitmix64(&mut state) >> 11) as f64
                / (1u64 << 53) as f64;
            (50.0 * (u * 11.5).exp()) as u64
        })
        .collect();
    let mut histogram = new_histogram();
    for &v in &sample {
        histogram.record(v).unwrap();
    }
    let mut sorted = sample.clone();
    sorted.sort_unstable();
    for p in [1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
        let exact = pgx::stats::nearest_rank(&sorted, p);
        let hdr = percentile_us(&histogram, p);
        // 3 significant digits: the bucket holding a value is at most 1/1024 of it wide.
        assert!(
            hdr >= exact && hdr - exact <= exact / 1024 + 1,
            "p{p}: histogram {hdr} vs exact {exact}"
        );
    }
    let ms = percentiles(&histogram);
    let exact_ms = |p| pgx::stats::nearest_rank(&sorted, p) as f64 / 1000.0;
    assert!((ms.p99 - exact_ms(99.0)).abs() <= exact_ms(99.0) / 1000.0);
    assert!((ms.max - exact_ms(100.0)).abs() <= exact_ms(100.0) / 1000.0);
}

/// (d) hot: 80% of the draws on 20% of the keys, a seeded subset that is not the lowest ids.
#[test]
fn hot_generator_puts_80_percent_of_draws_on_20_percent_of_keys() {
    let generator = |seed: u64| {
        let yaml = "hot: {min: 1, max: 1000}";
        let spec: pgx::loadtest::spec::Generator = serde_saphyr::from_str(yaml).unwrap();
        Source::build(&spec, seed, &[], &[], "test", &mut |_| Ok(vec![])).unwrap()
    };
    let draws = |source: &Source| -> Vec<i64> {
        let mut rng = fastrand::Rng::with_seed(3);
        (0..200_000)
            .map(|_| source.draw(&mut rng, &[]).0.unwrap().parse().unwrap())
            .collect()
    };
    let first = draws(&generator(42));
    assert_eq!(first, draws(&generator(42)), "same seed, same draws");
    let mut counts = vec![0u64; 1001];
    for &key in &first {
        assert!((1..=1000).contains(&key));
        counts[key as usize] += 1;
    }
    let mut by_count: Vec<usize> = (1..=1000).collect();
    by_count.sort_by_key(|&k| std::cmp::Reverse(counts[k]));
    let top: Vec<usize> = by_count[..200].to_vec();
    let share = top.iter().map(|&k| counts[k]).sum::<u64>() as f64 / first.len() as f64;
    assert!(
        (0.78..=0.82).contains(&share),
        "top 20% of keys got {share:.3}"
    );
    let Source::Hot(hot) = generator(42) else {
        panic!("not a hot source")
    };
    assert_eq!(hot.hot_keys(), 200);
    assert!(
        top.iter().all(|&k| hot.is_hot(k as i64)),
        "the busiest keys are the hot set"
    );
    let low = top.iter().filter(|&&k| k <= 200).count();
    assert!(
        low < 100,
        "hot keys are spread over the range, {low} of 200 are ids <= 200"
    );
    let other = generator(43);
    let Source::Hot(other) = other else { panic!() };
    let shared = (1..=1000)
        .filter(|&k| hot.is_hot(k) && other.is_hot(k))
        .count();
    assert!(
        shared < 100,
        "another seed picks another hot set ({shared} in common)"
    );
}

/// A database with a 100-row `feature` table (id 1..100) for lookup scripts.
fn feature_db(name: &str) -> TestDb {
    let db = TestDb::new(name);
    db.client()
        .batch_execute(
            "CREATE TABLE feature (id int PRIMARY KEY, f real);
             INSERT INTO feature SELECT g, g FROM generate_series(1, 100) g;",
        )
        .unwrap();
    db
}

/// `n` lookups of a drawn key `k` as a script's statement list (YAML).
fn lookups(n: usize) -> String {
    "
      - { sql: 'SELECT f FROM feature WHERE id = $1', params: [{ref: k}] }"
        .repeat(n)
}

/// (e) Five lookups with a 20 ms client-side delay (`rtt_mode: client`, the precise
/// timer): sequentially 7 round trips (BEGIN, 5, COMMIT), pipelined one.
#[test]
fn pipelined_statements_take_one_round_trip() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = feature_db("load_pipeline");
    let lookups = lookups(5);
    let spec = spec(&format!(
        "clients: [2]
duration: 1s
warmup: 0s
repeat: 1
rtt: 20ms
rtt_mode: client
mix: each
scripts:
  sequential:
    let: {{ k: {{uniform: {{min: 1, max: 100}}}} }}
    statements: {lookups}
  pipelined:
    pattern: pipelined
    let: {{ k: {{uniform: {{min: 1, max: 100}}}} }}
    statements: {lookups}
"
    ));
    let result = load(&db.config(), &spec);
    let point = |name: &str| {
        result
            .points
            .iter()
            .find(|p| p.script_mix == name)
            .unwrap_or_else(|| panic!("no point for {name}"))
    };
    let (seq, pipe) = (point("sequential"), point("pipelined"));
    eprintln!("{result:#?}");
    assert_eq!(
        seq.errors + pipe.errors,
        0,
        "{:?} {:?}",
        seq.error_samples,
        pipe.error_samples
    );
    assert_eq!(seq.round_trips_per_tx, 7.0);
    assert_eq!(pipe.round_trips_per_tx, 1.0);
    assert!(
        seq.latency_ms.p50 >= 100.0,
        "sequential p50 {}",
        seq.latency_ms.p50
    );
    assert!(
        pipe.latency_ms.p50 < 45.0,
        "pipelined p50 {}",
        pipe.latency_ms.p50
    );
    assert!(seq.latency_ms.p50 / pipe.latency_ms.p50 > 3.0);
    assert_eq!(result.rtt_ms, Some(20.0));
    // The timerfd sleeps 20 ms, not tokio's 21-22 ms.
    assert!(
        result
            .rtt_actual_ms
            .is_some_and(|ms| (20.0..20.8).contains(&ms)),
        "{:?}",
        result.rtt_actual_ms
    );
    assert_eq!(result.rtt_mode.as_deref(), Some("client"));
    assert_eq!(result.transport, "unix socket");
}

/// A broken script fails before any load, naming the script and statement.
#[test]
fn a_bad_statement_is_an_error_before_the_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_bad");
    let cases = [
        (
            "SELECT * FROM missing_table WHERE id = $1",
            "[{uniform: {min: 1, max: 2}}]",
            "missing_table",
        ),
        (
            "SELECT $1::int + $2::int",
            "[{constant: {value: 1}}]",
            "2 parameter(s)",
        ),
    ];
    for (sql, params, expected) in cases {
        let spec = spec(&format!(
            "clients: [1]\nduration: 1s\nscripts:\n  broken:\n    statements: [{{ sql: '{sql}', params: {params} }}]\n"
        ));
        let started = Instant::now();
        let err = run(&db.config(), &spec, &[], &mut |_| {}).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("script broken, statement 1"), "{text}");
        assert!(text.contains(expected), "{text}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

/// `list:` values come from the database; `{{vars}}` fill SQL and bounds.
#[test]
fn list_values_and_vars_reach_the_statements() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_list");
    db.client()
        .batch_execute(
            "CREATE TABLE tag (name text PRIMARY KEY);
             INSERT INTO tag VALUES ('red'), ('green');
             CREATE TABLE seen (name text, n int);",
        )
        .unwrap();
    let spec = spec(
        "clients: [2]
transactions: 20
warmup: 0s
repeat: 1
scripts:
  record:
    statements:
      - sql: INSERT INTO {{table}} VALUES ($1, $2)
        params: [{list: {sql: SELECT name FROM tag}}, {uniform: {min: 1, max: '{{top}}'}}]
",
    );
    let vars = [
        ("table".to_string(), "seen".to_string()),
        ("top".to_string(), "3".to_string()),
    ];
    let result = run(&db.config(), &spec, &vars, &mut |_| {}).unwrap();
    assert_eq!(result.points[0].transactions, 40);
    assert!(result.points[0].tps_median > 0.0);
    let rows = db.client().query("SELECT name, n FROM seen", &[]).unwrap();
    assert_eq!(rows.len(), 40);
    for row in rows {
        let (name, n): (String, i32) = (row.get(0), row.get(1));
        assert!(name == "red" || name == "green");
        assert!((1..=3).contains(&n));
    }
}

/// The mode `auto` picked, for messages: netem where the kernel has it, else the relay.
fn describe_mode(result: &LoadResult) -> String {
    format!(
        "mode {:?} ({:?}) over {}",
        result.rtt_mode, result.rtt_note, result.transport
    )
}

/// A real round trip: `SELECT 1` through the delay measures the configured rtt within 5%
/// in the probe pgx runs before the load (a trimmed mean of 40); the load's own
/// latencies show one round trip per transaction (15 transactions on a shared machine
/// wake late now and then, so their median is held to "one round trip, not two").
#[test]
fn real_delay_round_trip_is_within_5_percent_of_the_configured_one() {
    // Timed against the configured delay: the cores to itself (under the whole suite a
    // probe took 21.05 ms for 20).
    let _alone = crate::common::exclusive();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_rtt");
    let spec = spec(
        "clients: [1]
transactions: 15
warmup: 0s
repeat: 1
rtt: 20ms
scripts:
  ping: { statements: [{ sql: SELECT 1 }] }
",
    );
    let result = load(&db.config(), &spec);
    let mode = describe_mode(&result);
    eprintln!("{mode}: {result:#?}");
    assert!(
        matches!(result.rtt_mode.as_deref(), Some("netem" | "relay")),
        "{mode}"
    );
    if result.rtt_mode.as_deref() == Some("relay") {
        assert!(
            result
                .rtt_note
                .as_deref()
                .is_some_and(|n| n.contains("netem")),
            "the report says why netem was not used: {mode}"
        );
    }
    let probe = result.rtt_probe_ms.expect("a probe ran");
    assert!(
        (probe / 20.0 - 1.0).abs() < 0.05,
        "SELECT 1 probe {probe:.3} ms for a 20 ms rtt ({mode})"
    );
    let point = &result.points[0];
    assert_eq!(point.transactions, 15, "{:?}", point.error_samples);
    let p50 = point.latency_ms.p50 / 20.0;
    assert!(
        (0.95..1.5).contains(&p50),
        "load p50 {} ms for a 20 ms rtt: one round trip ({mode})",
        point.latency_ms.p50
    );
}

/// Seed 004's question under a real delay: 30 lookups pipelined cost one round trip,
/// awaited one by one 32 (BEGIN, 30, COMMIT). The latencies show it, not only pgx's count.
#[test]
fn pipelining_30_statements_costs_one_round_trip_and_sequential_32() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = feature_db("load_pipe30");
    let lookups = lookups(30);
    let rtt = 10.0;
    let spec = spec(&format!(
        "clients: [1]
transactions: 3
warmup: 0s
repeat: 1
rtt: {rtt}ms
mix: each
scripts:
  sequential:
    let: {{ k: {{uniform: {{min: 1, max: 100}}}} }}
    statements: {lookups}
  pipelined:
    pattern: pipelined
    let: {{ k: {{uniform: {{min: 1, max: 100}}}} }}
    statements: {lookups}
"
    ));
    let result = load(&db.config(), &spec);
    let mode = describe_mode(&result);
    let point = |name: &str| {
        result
            .points
            .iter()
            .find(|p| p.script_mix == name)
            .unwrap_or_else(|| panic!("no point for {name}"))
    };
    let (seq, pipe) = (point("sequential"), point("pipelined"));
    eprintln!("{mode}: {result:#?}");
    assert_eq!(seq.transactions + pipe.transactions, 6, "{mode}");
    assert_eq!(seq.round_trips_per_tx, 32.0);
    assert_eq!(pipe.round_trips_per_tx, 1.0);
    let trips = |p: &pgx::loadtest::LoadPoint| p.latency_ms.p50 / rtt;
    // Each round trip also carries a lookup and the relay's hops (two threads woken by
    // a µs timer on two shared cores: 0.1–2 ms a round trip, measured 354–382 ms for
    // the 32 here): allow 25% on top. 31 round trips or fewer would be below the range.
    assert!(
        (31.5..40.0).contains(&trips(seq)),
        "sequential {:?} ({mode})",
        seq.latency_ms
    );
    assert!(
        (0.95..1.5).contains(&trips(pipe)),
        "pipelined {:?} ({mode})",
        pipe.latency_ms
    );
}

/// Asking for kernel netem where it cannot be had is a clear error, never a silent
/// downgrade; where it can, the run says it used netem.
#[test]
fn netem_on_request_works_or_says_why_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_netem");
    let spec = spec(
        "clients: [1]
transactions: 5
warmup: 0s
repeat: 1
rtt: 4ms
rtt_mode: netem
scripts:
  ping: { statements: [{ sql: SELECT 1 }] }
",
    );
    match run(&db.config(), &spec, &[], &mut |_| {}) {
        Ok(result) => {
            assert_eq!(result.rtt_mode.as_deref(), Some("netem"));
            assert!(result.transport.contains("netem"), "{}", result.transport);
            let probe = result.rtt_probe_ms.unwrap();
            assert!((probe / 4.0 - 1.0).abs() < 0.05, "probe {probe}");
        }
        Err(err) => {
            let text = format!("{err:#}");
            assert!(text.contains("netem"), "{text}");
            assert!(text.contains("rtt_mode: relay"), "{text}");
        }
    }
    // Nothing of pgx's is left in this namespace either way.
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output();
    if let Ok(out) = links {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("pgx-s") && !text.contains("pgx-c"), "{text}");
    }
}

/// Durations no run could last are errors before any database work, not panics.
#[test]
fn absurd_durations_are_errors_not_panics() {
    let db = TestDb::new("load_absurd");
    for line in [
        "duration: 99999999999999999999999s",
        "warmup: 99999999999999h",
        "timeout: 9999999999999999999ms",
        "rtt: 99999999999999999999s",
    ] {
        let spec = spec(&format!(
            "clients: [1]\n{line}\nscripts:\n  a: {{ statements: [{{ sql: SELECT 1 }}] }}\n"
        ));
        let err = run(&db.config(), &spec, &[], &mut |_| {}).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("longer than pgx accepts"), "{line}: {text}");
    }
}

/// Ctrl-C during a load run through the delay relay: pgx stops within moments (not at
/// the end of its 60 s window), exits 130, and leaves no load connection and no relay
/// socket behind.
#[test]
fn ctrl_c_ends_a_delayed_load_run_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = crate::common::server();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("no-migrations")).unwrap();
    let yaml = "name: load-interrupted
about: a long load run through the relay, interrupted (a test fixture)
schema:
  migrations: no-migrations
dataset:
  scale: 1
  vars: { rows: 10 }
  steps:
    - name: table
      sql: CREATE TABLE t AS SELECT g AS id FROM generate_series(1, {{rows}}) g;
baseline: plain
variants:
  plain: {}
load:
  clients: [2]
  duration: 60s
  warmup: 0s
  repeat: 1
  rtt: 5ms
  rtt_mode: relay
  scripts:
    read: { statements: [{ sql: 'SELECT id FROM t WHERE id = $1', params: [{uniform: {min: 1, max: 10}}] }] }
";
    let path = project.path().join("load-interrupted.yaml");
    std::fs::write(&path, yaml).unwrap();
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT
    );
    let child = crate::common::pgx_command(project.path())
        .env("DATABASE_URL", &url)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    let load_backends = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgx load' \
                 AND datname LIKE 'pgx_run_load_interrupted_%'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let relay_socket = format!("@pgx-load-relay-{pid}-");
    let deadline = Instant::now() + Duration::from_secs(60);
    while load_backends(&mut admin) < 2 {
        assert!(Instant::now() < deadline, "the load never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sockets = std::fs::read_to_string("/proc/net/unix").unwrap();
    assert!(
        sockets.contains(&relay_socket),
        "the relay listens while the load runs"
    );
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "Ctrl-C ends the load run, not its 60 s window: {waited:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sockets = std::fs::read_to_string("/proc/net/unix").unwrap();
    assert!(!sockets.contains(&relay_socket), "no relay socket is left");
    let deadline = Instant::now() + Duration::from_secs(10);
    while load_backends(&mut admin) > 0 {
        assert!(Instant::now() < deadline, "load connections were left open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Everything `rtt_mode: netem` does except `tc`: pgx's two namespaces, the veth pair, the
/// relay listening on TCP in the server namespace, `SELECT 1` from a thread in the client
/// namespace. So the netem path is exercised even on a kernel without `sch_netem`; and
/// nothing of it is visible from this namespace, during or after.
#[test]
fn the_namespace_path_carries_queries_over_tcp() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_netns");
    let startup =
        pgx::loadtest::wire::Startup::from_config(&db.config(), Duration::from_secs(5)).unwrap();
    let (took, links) =
        pgx::loadtest::net::namespace_path_check(&startup, Duration::from_secs(20)).unwrap();
    eprintln!("SELECT 1 over the veth pair: {took:?}\n{links}");
    assert!(
        links.contains("pgx-c"),
        "the client namespace has its veth end: {links}"
    );
    assert!(
        !links.contains("pgx-s"),
        "the other end is in the server namespace"
    );
    assert!(took < Duration::from_secs(1));
    let here = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let here = String::from_utf8_lossy(&here.stdout);
    assert!(!here.contains("pgx-"), "nothing in this namespace: {here}");
}

/// Client groups run together and are reported apart; a lock wait the load runs into is
/// seen, with its length, on the group that waited; a group's rate is kept.
#[test]
fn groups_report_their_own_percentiles_and_a_forced_lock_wait_is_measured() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_groups");
    db.client()
        .batch_execute(
            "CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
             INSERT INTO counter (id) SELECT g FROM generate_series(1, 100) g;",
        )
        .unwrap();
    // The holder keeps row 1 locked for 400 ms per transaction; the writers update row 1
    // and so wait for it; the readers read other rows at 40 TPS and wait for nothing.
    let spec = spec(
        "duration: 2s
warmup: 200ms
repeat: 1
lock_sampling: 20ms
groups:
  holder: { clients: 1, scripts: [hold] }
  writers: { clients: 2, scripts: [bump] }
  readers: { clients: 2, scripts: [read], rate: 40 }
scripts:
  hold:
    statements:
      - { sql: 'SELECT n FROM counter WHERE id = 1 FOR UPDATE' }
      - { sql: 'SELECT pg_sleep(0.4)' }
  bump:
    statements:
      - { sql: 'UPDATE counter SET n = n + 1 WHERE id = 1' }
  read:
    statements:
      - { sql: 'SELECT n FROM counter WHERE id = $1', params: [{uniform: {min: 2, max: 100}}] }
",
    );
    let result = load(&db.config(), &spec);
    let point = |group: &str| {
        result
            .points
            .iter()
            .find(|p| p.group.as_deref() == Some(group))
            .unwrap_or_else(|| panic!("no point for group {group}: {:?}", result.points))
    };
    let (holder, writers, readers) = (point("holder"), point("writers"), point("readers"));
    assert_eq!(result.points.len(), 3, "one point per group");
    assert_eq!(
        (holder.clients, writers.clients, readers.clients),
        (1, 2, 2)
    );
    assert!(
        holder.latency_ms.p50 >= 400.0,
        "the holder sleeps 400 ms: {:?}",
        holder.latency_ms
    );
    assert!(
        readers.latency_ms.p99 < 100.0 && readers.latency_ms.p99 < holder.latency_ms.p50,
        "readers have percentiles of their own: {:?} against the holder's {:?}",
        readers.latency_ms,
        holder.latency_ms
    );
    let waits = writers.lock_waits.as_ref().expect("lock waits sampled");
    assert!(
        waits.waits >= 2 && waits.longest_ms >= 150.0,
        "the writers wait for the holder's row lock, for hundreds of ms: {waits:?}"
    );
    assert!(
        waits
            .on
            .iter()
            .any(|on| on.starts_with("transactionid") || on.contains("counter")),
        "{waits:?}"
    );
    let read_waits = readers.lock_waits.as_ref().expect("sampled");
    assert_eq!(read_waits.waits, 0, "readers never wait: {read_waits:?}");
    // 40 TPS for 2 s: about 80 transactions (Poisson), nowhere near as fast as it goes.
    assert!(
        (40..=130).contains(&readers.transactions),
        "the readers keep their rate: {} transactions in 2 s at 40 TPS",
        readers.transactions
    );
    let server = writers.runs[0].server.as_ref().expect("server activity");
    assert!(
        server.dead_tuples > 0,
        "the updates left dead tuples: {server:?}"
    );
    let md = pgx::report::loadtest::markdown(&[("plain".to_string(), result.clone())]);
    assert!(
        md.contains("### Locks and writes under concurrency")
            && md.contains("writers (bump)")
            && md.contains("readers (read)"),
        "{md}"
    );
}

/// One group may sweep its clients: a run per count, the other groups beside it as they
/// are, a point per group and count; a counter gives its change per second per run.
#[test]
fn a_group_sweeps_its_clients_beside_a_fixed_group() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_group_sweep");
    db.client()
        .batch_execute("CREATE TABLE q (id bigserial PRIMARY KEY, v int)")
        .unwrap();
    let spec = spec(
        "duration: 1s
warmup: 0s
repeat: 1
counters:
  rows: SELECT count(*) FROM q
groups:
  producer: { clients: 1, scripts: [put], rate: 100 }
  consumers: { clients: [1, 3], scripts: [get] }
scripts:
  put: { statements: [{ sql: 'INSERT INTO q (v) VALUES (1)' }] }
  get: { statements: [{ sql: 'SELECT count(*) FROM q' }] }
",
    );
    let result = load(&db.config(), &spec);
    let points: Vec<(String, usize)> = result
        .points
        .iter()
        .map(|p| (p.group.clone().unwrap_or_default(), p.clients))
        .collect();
    assert_eq!(
        points,
        [
            ("producer".to_string(), 1),
            ("consumers".to_string(), 1),
            ("producer".to_string(), 1),
            ("consumers".to_string(), 3),
        ],
        "a run per count of the sweeping group, the producer in each"
    );
    assert!(result.points.iter().all(|p| p.transactions > 0));
    let inserted: i64 = db
        .client()
        .query_one("SELECT count(*) FROM q", &[])
        .unwrap()
        .get(0);
    assert!(inserted > 0, "the producer ran in both runs");
    // The counter's change per second over each window: the producer's 100 rows a second.
    for p in &result.points {
        let rows = p.runs[0].counters["rows"];
        assert!(
            (40.0..200.0).contains(&rows),
            "{} rows a second for a 100 TPS producer",
            rows
        );
    }
}

/// The backends' private memory is sampled per group: a group whose sort fits a large
/// work_mem holds far more than one that spills to disk under PostgreSQL's default.
#[test]
fn each_group_reports_its_backends_private_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_memory");
    let sort = "SELECT count(*) FROM (SELECT g FROM generate_series(1, 2000000) g ORDER BY g DESC OFFSET 0) s";
    let spec = spec(&format!(
        "duration: 3s
warmup: 200ms
repeat: 1
timeout: 20s
groups:
  in-memory: {{ clients: 1, scripts: [big] }}
  spilling: {{ clients: 1, scripts: [small] }}
scripts:
  big:
    statements:
      - {{ sql: \"SET LOCAL work_mem = '512MB'\" }}
      - {{ sql: '{sort}' }}
  small:
    statements:
      - {{ sql: \"SET LOCAL work_mem = '4MB'\" }}
      - {{ sql: '{sort}' }}
"
    ));
    let result = load(&db.config(), &spec);
    let memory = |group: &str| {
        result
            .points
            .iter()
            .find(|p| p.group.as_deref() == Some(group))
            .and_then(|p| p.memory.clone())
            .unwrap_or_else(|| panic!("no memory for {group}: {:?}", result.points))
    };
    let (big, small) = (memory("in-memory"), memory("spilling"));
    assert_eq!((big.backends, small.backends), (1, 1), "{big:?} {small:?}");
    assert!(
        big.max_kb > 60 * 1024 && small.max_kb < 30 * 1024 && big.max_kb > 3 * small.max_kb,
        "a 2M-row sort in memory holds tens of MB, a spilling one a few: {big:?} {small:?}"
    );
    assert_eq!(big.total_kb, big.max_kb, "one backend: together is itself");
    let md = pgx::report::loadtest::markdown(&[("plain".to_string(), result.clone())]);
    assert!(
        md.contains("### Memory of the load's backends") && md.contains("in-memory (big)"),
        "{md}"
    );
}

/// A group whose sessions run two scripts reports each script's latency apart: the fast
/// one's p99 is its own, not the slow one's that shares its sessions.
#[test]
fn a_group_of_two_scripts_reports_each_scripts_latency() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("load_by_script");
    let spec = spec(
        "duration: 1500ms
warmup: 100ms
repeat: 1
groups:
  pool: { clients: 2, scripts: [fast, slow] }
scripts:
  fast:
    weight: 3
    statements:
      - { sql: SELECT 1 }
  slow:
    weight: 1
    statements:
      - { sql: SELECT pg_sleep(0.05) }
",
    );
    let result = load(&db.config(), &spec);
    let point = &result.points[0];
    let script = |name: &str| {
        point
            .by_script
            .iter()
            .find(|s| s.script == name)
            .unwrap_or_else(|| panic!("no {name}: {:?}", point.by_script))
    };
    let (fast, slow) = (script("fast"), script("slow"));
    assert!(fast.transactions > 0 && slow.transactions > 0);
    assert_eq!(
        fast.transactions + slow.transactions,
        point.transactions,
        "the scripts split the point's transactions"
    );
    assert!(
        slow.latency_ms.p50 >= 50.0 && fast.latency_ms.p99 < 20.0,
        "each script has its own percentiles: {:?} {:?}",
        fast.latency_ms,
        slow.latency_ms
    );
    assert!(point.latency_ms.p99 >= 50.0, "the point's own mixes both");
    let md = pgx::report::loadtest::markdown(&[("plain".to_string(), result.clone())]);
    assert!(md.contains("### Latency per script"), "{md}");
}

/// An experiment's loads take turns: every variant (the A/A control included) runs its
/// first repeat before any runs its second, the order rotating, through a delay relay
/// that each variant's sweep lets go of between its turns; the report says so.
#[test]
fn variants_loads_take_turns_repeat_by_repeat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = crate::common::server();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("no-migrations")).unwrap();
    let yaml = "name: load-turns
about: three variants' loads, two repeats each (a test fixture)
schema:
  migrations: no-migrations
dataset:
  scale: 1
  steps:
    - name: table
      sql: CREATE TABLE t AS SELECT g AS id, g % 7 AS k FROM generate_series(1, 1000) g;
baseline: plain
variants:
  plain: {}
  by-k:
    sql: CREATE INDEX t_k ON t (k);
load:
  clients: [1]
  duration: 300ms
  warmup: 0s
  repeat: 2
  rtt: 1ms
  rtt_mode: relay
  scripts:
    read: { statements: [{ sql: 'SELECT count(*) FROM t WHERE k = $1', params: [{uniform: {min: 0, max: 6}}] }] }
";
    let path = project.path().join("load-turns.yaml");
    std::fs::write(&path, yaml).unwrap();
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT
    );
    let out = crate::common::pgx_command(project.path())
        .env("DATABASE_URL", &url)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // "plain: load read · 1 clients · run 1/2: 812 TPS, ..." in the order they ran.
    let turns: Vec<(&str, &str)> = stderr
        .lines()
        .filter_map(|l| {
            let (variant, rest) = l.split_once(": load read")?;
            let run = rest.split("· run ").nth(1)?.split(':').next()?;
            Some((variant.trim_start_matches("pgx: ").trim(), run))
        })
        .collect();
    let names = ["plain", "by-k", "A/A control"];
    assert_eq!(
        turns.len(),
        6,
        "three variants, two repeats: {turns:?}\n{stderr}"
    );
    assert!(
        turns[..3].iter().all(|(_, run)| *run == "1/2")
            && turns[3..].iter().all(|(_, run)| *run == "2/2"),
        "every first repeat before any second: {turns:?}"
    );
    for half in [&turns[..3], &turns[3..]] {
        let mut seen: Vec<&str> = half.iter().map(|(v, _)| *v).collect();
        seen.sort();
        let mut want = names.to_vec();
        want.sort();
        assert_eq!(seen, want, "each variant once per repeat: {turns:?}");
    }
    assert_ne!(turns[0].0, turns[3].0, "the order rotates: {turns:?}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("load-turns.json")).unwrap(),
    )
    .unwrap();
    for v in json["variants"].as_array().unwrap() {
        assert_eq!(v["load"]["alternated"], 3, "{}", v["name"]);
        assert_eq!(v["load"]["points"][0]["runs"].as_array().unwrap().len(), 2);
    }
    let md = std::fs::read_to_string(project.path().join("load-turns.md")).unwrap();
    assert!(md.contains("loads took turns, repeat by repeat"), "{md}");
    // A cold start restarts the server: refused on one pgx does not run.
    std::fs::write(
        &path,
        yaml.replace("  repeat: 2\n", "  repeat: 2\n  start: cold\n"),
    )
    .unwrap();
    let out = crate::common::pgx_command(project.path())
        .env("DATABASE_URL", &url)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("load.start: cold") && stderr.contains("not pgx's own"),
        "{stderr}"
    );
}

/// A fan-out request runs its slices on sessions of its own, at the same time: three
/// 100 ms statements split over three sessions take about 100 ms, not 300 ms as in one
/// pipeline, in one round trip; each client holds three sessions. A statement that fails
/// names its slice; bad fan-outs are refused before the run.
#[test]
fn a_fanned_out_request_runs_its_slices_side_by_side() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = feature_db("load_fanout");
    let statements = "[{ sql: 'SELECT pg_sleep(0.1)' }, { sql: 'SELECT pg_sleep(0.1)' }, { sql: 'SELECT pg_sleep(0.1)' }]";
    let spec_of = |fanout: &str, pattern: &str| {
        spec(&format!(
            "clients: [2]
duration: 1s
warmup: 0s
repeat: 1
mix: each
scripts:
  fan:
    pattern: {pattern}
    {fanout}
    statements: {statements}
"
        ))
    };
    let result = load(&db.config(), &spec_of("fanout: 3", "pipelined"));
    let fan = &result.points[0];
    assert_eq!(fan.errors, 0, "{:?}", fan.error_samples);
    assert_eq!(fan.round_trips_per_tx, 1.0);
    assert!(
        (95.0..180.0).contains(&fan.latency_ms.p50),
        "three 100 ms statements side by side: p50 {}",
        fan.latency_ms.p50
    );
    assert_eq!(
        fan.runs[0].connections, 6,
        "two clients, three sessions each"
    );
    let one = load(&db.config(), &spec_of("", "pipelined"));
    assert!(
        one.points[0].latency_ms.p50 >= 290.0,
        "the same request on one session: p50 {}",
        one.points[0].latency_ms.p50
    );
    // A failing statement in the second slice is named with its slice.
    let failing = spec(
        "clients: [1]
transactions: 3
warmup: 0s
repeat: 1
scripts:
  fan:
    pattern: pipelined
    fanout: 2
    statements: [{ sql: 'SELECT 1' }, { sql: 'SELECT 1 / (random() * 0)::int' }]
",
    );
    let failed = load(&db.config(), &failing);
    assert!(
        failed.points[0].errors > 0
            && failed.points[0]
                .error_samples
                .iter()
                .any(|e| e.contains("script fan, slice 2") && e.contains("division by zero")),
        "{:?}",
        failed.points[0].error_samples
    );
    for (fanout, pattern, says) in [
        ("fanout: 4", "pipelined", "fanout 4 for 3 statements"),
        ("fanout: 1", "pipelined", "fanout 1 for 3 statements"),
        ("fanout: 3", "sequential", "fanout needs pattern: pipelined"),
    ] {
        let err =
            run(&db.config(), &spec_of(fanout, pattern), &[], &mut |_| {}).expect_err("refused");
        assert!(format!("{err:#}").contains(says), "{err:#}");
    }
}
