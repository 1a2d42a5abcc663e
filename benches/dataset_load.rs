//! pgx's dataset build against the bulk-load limit of the same rows, in the same run:
//!
//! - **pgx**: the experiment's base built from scratch (`prepare_base`, bulk-load path):
//!   migrations, the steps (SQL generation, parallel steps streamed through COPY),
//!   VACUUM where needed, the indexes, the foreign keys, ANALYZE.
//! - **limit, one session** (how issue 10 measured it): the rows pgx produced, taken
//!   from its base with `COPY ... TO STDOUT (FORMAT binary)` beforehand (untimed), loaded
//!   into the migrations' tables stripped of indexes and foreign keys with
//!   `COPY ... FROM STDIN (FORMAT binary, FREEZE)`, every table truncated in the loading
//!   transaction (for WAL and FREEZE the same as created in it); then the migrations'
//!   indexes, each one statement (PostgreSQL builds the partitions' indexes, with its
//!   parallel maintenance workers); then ANALYZE. No foreign keys.
//! - **limit, N connections**: the same COPY spread over N connections (a transaction per
//!   table), then the indexes and ANALYZE through pgx's own scheduler: what this machine
//!   can do at best with the rows already generated.
//!
//! Measurements alternate (the order rotates every round) and repeat, so drift does not
//! decide; the load average before and after is recorded. Writes
//! reports/benchmarks/dataset-load.md.
//!
//!     cargo bench --bench dataset_load
//!     PGX_BENCH_DATASETS=index-strategies PGX_BENCH_SCALE=0.05 PGX_BENCH_ROUNDS=2 cargo bench --bench dataset_load
//!
//! A benchmark, not a test: it records numbers and asserts none.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use pgx::experiment::databases::prepare_base_with;
use pgx::experiment::dataset::catalog::Snapshot;
use pgx::experiment::dataset::{LoadOptions, Loader};
use pgx::experiment::result::Timing;
use pgx::experiment::spec::{self, Spec};
use pgx::host::cores;
use pgx::target::{Target, TargetOptions, connect};

const LIMIT_DB: &str = "pgx_bench_limit";

/// A table's name and its rows as binary COPY.
type Rows = (String, Vec<u8>);

fn main() {
    pgx::interrupt::install();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names: Vec<String> = std::env::var("PGX_BENCH_DATASETS")
        .unwrap_or_else(|_| "index-strategies,tag-filtering".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let scale: f64 = std::env::var("PGX_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.25);
    let rounds: usize = std::env::var("PGX_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let target = Target::resolve(&TargetOptions::default()).expect("a PostgreSQL server");
    let load_before = load_average();
    let mut results = Vec::new();
    for name in &names {
        let spec = spec::read(&root.join("experiments").join(format!("{name}.yaml")))
            .expect("experiment file");
        results.push(bench(&target, &spec, scale, rounds));
        // Written after every experiment, so an interrupted run keeps what it measured.
        write_report(root, &target, scale, rounds, &load_before, &results);
    }
}

#[derive(Default)]
struct Run {
    seconds: f64,
    /// Phases (label, seconds).
    phases: Vec<Timing>,
    /// CPU seconds of the server's processes (embedded cluster only) and of this process.
    server_cpu: Option<f64>,
    client_cpu: f64,
}

struct Result {
    name: String,
    rows: i64,
    bytes: usize,
    pgx: Vec<Run>,
    single: Vec<Run>,
    parallel: Vec<Run>,
    pgx_work: Vec<Timing>,
    connections: usize,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Pgx,
    Single,
    Parallel,
}

fn bench(target: &Target, spec: &Spec, scale: f64, rounds: usize) -> Result {
    let connections = cores();
    let mut result = Result {
        name: spec.name.clone(),
        rows: 0,
        bytes: 0,
        pgx: Vec::new(),
        single: Vec::new(),
        parallel: Vec::new(),
        pgx_work: Vec::new(),
        connections,
    };
    let mut dump: Option<Vec<Rows>> = None;
    let order = [Kind::Pgx, Kind::Single, Kind::Parallel];
    for round in 0..rounds {
        for i in 0..order.len() {
            let kind = order[(i + round) % order.len()];
            if dump.is_none() && !matches!(kind, Kind::Pgx) {
                continue;
            }
            eprintln!(
                "{} scale {scale} round {}/{rounds}: {kind:?} (load {})",
                spec.name,
                round + 1,
                load_average()
            );
            let run = match kind {
                Kind::Pgx => {
                    let (run, info) = build_with_pgx(target, spec, scale);
                    result.pgx_work = info.load.work.clone();
                    if dump.is_none() {
                        let rows = dump_rows(target, &info.database);
                        result.rows = info.row_counts.iter().map(|(_, n)| n).sum();
                        result.bytes = rows.iter().map(|(_, b)| b.len()).sum();
                        dump = Some(rows);
                    }
                    result.pgx.push(run);
                    continue;
                }
                Kind::Single => limit(target, spec, scale, dump.as_deref().unwrap_or(&[]), 1),
                Kind::Parallel => limit(
                    target,
                    spec,
                    scale,
                    dump.as_deref().unwrap_or(&[]),
                    connections,
                ),
            };
            eprintln!("  {kind:?}: {:.1} s", run.seconds);
            match kind {
                Kind::Single => result.single.push(run),
                _ => result.parallel.push(run),
            }
        }
        // The first round starts with pgx (it makes the rows); the others rotate.
        if let Some(last) = result.pgx.last() {
            eprintln!("  Pgx: {:.1} s", last.seconds);
        }
    }
    drop_limit_db(target);
    result
}

fn build_with_pgx(
    target: &Target,
    spec: &Spec,
    scale: f64,
) -> (Run, pgx::experiment::result::DatasetInfo) {
    let mut admin = connect(&target.admin_config()).expect("admin connection");
    let cpu = Cpu::start(target);
    let started = Instant::now();
    let base = prepare_base_with(
        target,
        &mut admin,
        spec,
        scale,
        true,
        &LoadOptions::default(),
        &mut |_, _| {},
    )
    .expect("pgx builds the base");
    let seconds = started.elapsed().as_secs_f64();
    let (server_cpu, client_cpu) = cpu.stop();
    let info = base.info.clone();
    (
        Run {
            seconds,
            phases: info.steps.clone(),
            server_cpu,
            client_cpu,
        },
        info,
    )
}

/// Every leaf table's rows, as binary COPY, from pgx's base.
fn dump_rows(target: &Target, database: &str) -> Vec<Rows> {
    let mut client = connect(&target.config_for(database)).expect("base connection");
    let snapshot = Snapshot::read(&mut client, pgx::migrate::HISTORY_TABLE).expect("catalog");
    let mut out = Vec::new();
    for table in snapshot.leaves() {
        let mut bytes = Vec::new();
        let mut reader = client
            .copy_out(format!("COPY {} TO STDOUT (FORMAT binary)", table.name).as_str())
            .expect("COPY TO");
        std::io::copy(&mut reader, &mut bytes).expect("read rows");
        drop(reader);
        out.push((table.name.clone(), bytes));
    }
    out
}

fn drop_limit_db(target: &Target) {
    let mut admin = connect(&target.admin_config()).expect("admin connection");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {LIMIT_DB} WITH (FORCE)"))
        .expect("drop the limit's database");
}

/// The migrations' tables without indexes and foreign keys, in a database of their own.
fn limit_schema(target: &Target, spec: &Spec) -> (postgres::Client, Snapshot) {
    drop_limit_db(target);
    let mut admin = connect(&target.admin_config()).expect("admin connection");
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {LIMIT_DB} TEMPLATE template0 ENCODING 'UTF8'"
        ))
        .expect("create the limit's database");
    let mut client = connect(&target.config_for(LIMIT_DB)).expect("limit connection");
    let files: Vec<_> = pgx::migrate::load_dir(&pgx::project_root().join(&spec.schema.migrations))
        .expect("migrations")
        .into_iter()
        .filter(|f| spec.schema.up_to.is_none_or(|v| f.version <= v))
        .collect();
    pgx::migrate::apply(&mut client, &files, &pgx::migrate::ApplyOptions::default())
        .expect("migrations apply");
    let snapshot = Snapshot::read(&mut client, pgx::migrate::HISTORY_TABLE).expect("catalog");
    snapshot.drop_all(&mut client).expect("strip the tables");
    (client, snapshot)
}

fn copy_in(client: &mut postgres::Client, table: &str, bytes: &[u8]) {
    let mut writer = client
        .copy_in(format!("COPY {table} FROM STDIN (FORMAT binary, FREEZE)").as_str())
        .expect("COPY FROM");
    // In pieces: one CopyData message may not exceed 1 GB.
    for piece in bytes.chunks(1 << 20) {
        writer.write_all(piece).expect("rows");
    }
    writer.finish().expect("COPY FREEZE");
}

/// The bulk-load limit of the dumped rows over `connections` connections (1: one
/// session, PostgreSQL's own index builds).
fn limit(target: &Target, spec: &Spec, scale: f64, rows: &[Rows], connections: usize) -> Run {
    let (mut client, snapshot) = limit_schema(target, spec);
    let loader_options = LoadOptions {
        connections: Some(connections),
    };
    let loader = Loader {
        target,
        dbname: LIMIT_DB,
        spec,
        vars: spec::scaled_vars(spec, scale),
        options: &loader_options,
    };
    let setup = loader.session_setup(&mut client).expect("settings");
    let cpu = Cpu::start(target);
    let started = Instant::now();
    let mut phases = Vec::new();

    let t = Instant::now();
    if connections <= 1 {
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        client
            .batch_execute(&format!("BEGIN; TRUNCATE {}", names.join(", ")))
            .expect("truncate");
        for (table, bytes) in rows {
            copy_in(&mut client, table, bytes);
        }
        client.batch_execute("COMMIT").expect("commit");
    } else {
        // Largest tables first, each to the connection with the least work so far.
        let mut order: Vec<&Rows> = rows.iter().collect();
        order.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
        let mut shares: Vec<(usize, Vec<&Rows>)> =
            (0..connections).map(|_| (0, Vec::new())).collect();
        for table in order {
            if let Some(share) = shares.iter_mut().min_by_key(|(bytes, _)| *bytes) {
                share.0 += table.1.len();
                share.1.push(table);
            }
        }
        std::thread::scope(|scope| {
            for (_, tables) in &shares {
                scope.spawn(move || {
                    let mut c = connect(&target.config_for(LIMIT_DB)).expect("connection");
                    for (table, bytes) in tables {
                        c.batch_execute(&format!("BEGIN; TRUNCATE {table}"))
                            .expect("truncate");
                        copy_in(&mut c, table, bytes);
                        c.batch_execute("COMMIT").expect("commit");
                    }
                });
            }
        });
    }
    phases.push(Timing {
        label: "COPY FREEZE".into(),
        seconds: t.elapsed().as_secs_f64(),
    });

    if connections <= 1 {
        let t = Instant::now();
        for sql in &setup {
            client.batch_execute(sql).expect("settings");
        }
        for sql in snapshot.recreate_statements().expect("index definitions") {
            client.batch_execute(&sql).expect("index build");
        }
        phases.push(Timing {
            label: "indexes".into(),
            seconds: t.elapsed().as_secs_f64(),
        });
        let t = Instant::now();
        client.batch_execute("ANALYZE").expect("ANALYZE");
        phases.push(Timing {
            label: "ANALYZE".into(),
            seconds: t.elapsed().as_secs_f64(),
        });
    } else {
        let t = Instant::now();
        let frozen: HashSet<u32> = snapshot.leaves().map(|t| t.oid).collect();
        let work = loader
            .finish(&mut client, &snapshot, &frozen, false)
            .expect("indexes and ANALYZE");
        phases.push(Timing {
            label: "indexes and ANALYZE".into(),
            seconds: t.elapsed().as_secs_f64(),
        });
        phases.extend(work.into_iter().map(|w| Timing {
            label: format!("  {} (summed over connections)", w.label),
            seconds: w.seconds,
        }));
    }
    let seconds = started.elapsed().as_secs_f64();
    let (server_cpu, client_cpu) = cpu.stop();
    drop(client);
    drop_limit_db(target);
    Run {
        seconds,
        phases,
        server_cpu,
        client_cpu,
    }
}

/// CPU seconds spent by the embedded server's processes and by this one.
struct Cpu {
    postmaster: Option<i32>,
    server: Option<f64>,
    client: f64,
}

impl Cpu {
    fn start(target: &Target) -> Cpu {
        let postmaster = match target {
            Target::Embedded(usage) => {
                std::fs::read_to_string(usage.cluster().data_dir().join("postmaster.pid"))
                    .ok()
                    .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            }
            Target::External(_) => None,
        };
        Cpu {
            postmaster,
            server: postmaster.map(server_cpu),
            client: client_cpu(),
        }
    }

    fn stop(self) -> (Option<f64>, f64) {
        let server = match (self.postmaster, self.server) {
            (Some(pid), Some(before)) => Some(server_cpu(pid) - before),
            _ => None,
        };
        (server, client_cpu() - self.client)
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// (ppid, utime + stime, cutime + cstime) of a process, in seconds.
fn proc_stat(pid: i32) -> Option<(i32, f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after "pid (comm) ": state ppid ... utime(14) stime(15) cutime(16) cstime(17).
    let ppid = fields.get(1)?.parse().ok()?;
    let n = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let ticks = clock_ticks();
    Some((ppid, (n(11)? + n(12)?) / ticks, (n(13)? + n(14)?) / ticks))
}

/// The postmaster's CPU, its reaped children's, and its live children's.
fn server_cpu(postmaster: i32) -> f64 {
    let mut total = proc_stat(postmaster).map_or(0.0, |(_, own, reaped)| own + reaped);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some((ppid, own, _)) = proc_stat(pid)
                && ppid == postmaster
            {
                total += own;
            }
        }
    }
    total
}

fn client_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn summary(runs: &[Run]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let min = s.iter().copied().fold(f64::INFINITY, f64::min);
    let max = s.iter().copied().fold(0.0, f64::max);
    (median(&mut s), min, max)
}

/// Median of a phase's seconds over runs (phases absent from a run count as 0).
fn phase_medians(runs: &[Run]) -> Vec<(String, f64)> {
    let mut labels: Vec<String> = Vec::new();
    for run in runs {
        for p in &run.phases {
            if !labels.contains(&p.label) {
                labels.push(p.label.clone());
            }
        }
    }
    labels
        .into_iter()
        .map(|label| {
            let mut v: Vec<f64> = runs
                .iter()
                .map(|r| {
                    r.phases
                        .iter()
                        .filter(|p| p.label == label)
                        .map(|p| p.seconds)
                        .sum()
                })
                .collect();
            (label, median(&mut v))
        })
        .collect()
}

fn cpu_medians(runs: &[Run]) -> String {
    let mut server: Vec<f64> = runs.iter().filter_map(|r| r.server_cpu).collect();
    let mut client: Vec<f64> = runs.iter().map(|r| r.client_cpu).collect();
    let server = if server.is_empty() {
        "n/a (external server)".to_string()
    } else {
        format!("{:.1} s", median(&mut server))
    };
    format!(
        "server CPU {server}, pgx's own CPU {:.1} s",
        median(&mut client)
    )
}

fn write_report(
    root: &Path,
    target: &Target,
    scale: f64,
    rounds: usize,
    load_before: &str,
    results: &[Result],
) {
    let mut md = String::from("# Dataset load: pgx against the bulk-load limit\n\n");
    md.push_str(
        "Produced by `cargo bench --bench dataset_load` (see the bench's header for what each \
         column does). *pgx* is the experiment's base built from scratch on pgx's bulk-load path \
         (SQL generation included); *limit* loads the very rows pgx produced, dumped from its \
         base beforehand, with `COPY ... (FORMAT binary, FREEZE)` into the migrations' tables \
         stripped of indexes and foreign keys and truncated in the loading transaction, then \
         builds the same indexes and runs ANALYZE (no foreign keys); *one session* as issue 10 \
         measured it (each index one statement, PostgreSQL's parallel maintenance workers), \
         *N connections* with the COPY spread over connections and pgx's own index scheduler. \
         Each round runs all three, the order rotating from round to round; medians with \
         [min–max] over the rounds.\n\n",
    );
    md.push_str(&format!(
        "Machine: {} CPUs, {}, {}. pgx commit {}. Scale {scale}, {rounds} rounds. Load average \
         (1, 5, 15 min) before: {load_before}; after: {}.\n\n",
        cores(),
        server_version(target),
        target.describe(),
        pgx::experiment::environment::git_commit(),
        load_average()
    ));
    md.push_str("| experiment | rows | pgx | limit, one session | pgx / limit | limit, N connections | pgx / that |\n|---|---|---|---|---|---|---|\n");
    for r in results {
        let (p, pmin, pmax) = summary(&r.pgx);
        let (s, smin, smax) = summary(&r.single);
        let (q, qmin, qmax) = summary(&r.parallel);
        md.push_str(&format!(
            "| `{}` | {} ({:.0} MB as binary COPY) | {p:.1} s [{pmin:.1}–{pmax:.1}] | {s:.1} s [{smin:.1}–{smax:.1}] | **{:.2}** | {q:.1} s [{qmin:.1}–{qmax:.1}] (N = {}) | {:.2} |\n",
            r.name,
            r.rows,
            r.bytes as f64 / 1e6,
            p / s,
            r.connections,
            p / q
        ));
    }
    md.push_str("\nTarget (issue 10): pgx ≤ 1.5 × the limit (one session).\n");
    for r in results {
        let (p, _, _) = summary(&r.pgx);
        let (s, _, _) = summary(&r.single);
        md.push_str(&format!(
            "\n## `{}`\n\n**{}** ({:.2} ×).\n\n",
            r.name,
            if p <= 1.5 * s {
                "Target met"
            } else {
                "Target not met"
            },
            p / s
        ));
        md.push_str("Phases (medians, seconds of wall time):\n\n| pgx | s | limit, one session | s | limit, N connections | s |\n|---|---|---|---|---|---|\n");
        let a = phase_medians(&r.pgx);
        let b = phase_medians(&r.single);
        let c = phase_medians(&r.parallel);
        for i in 0..a.len().max(b.len()).max(c.len()) {
            let cell = |v: &[(String, f64)]| {
                v.get(i)
                    .map(|(l, s)| (l.clone(), format!("{s:.2}")))
                    .unwrap_or_default()
            };
            let (al, av) = cell(&a);
            let (bl, bv) = cell(&b);
            let (cl, cv) = cell(&c);
            md.push_str(&format!("| {al} | {av} | {bl} | {bv} | {cl} | {cv} |\n"));
        }
        md.push_str("\npgx's maintenance work after the load, summed over its connections (last build):\n\n");
        for w in &r.pgx_work {
            md.push_str(&format!("- {}: {:.2} s\n", w.label, w.seconds));
        }
        md.push_str(&format!(
            "\nCPU (medians): pgx: {}; limit, one session: {}; limit, N connections: {}.\n",
            cpu_medians(&r.pgx),
            cpu_medians(&r.single),
            cpu_medians(&r.parallel)
        ));
        md.push_str(&bound_note(r));
    }
    let out = root.join("reports/benchmarks");
    std::fs::create_dir_all(&out).expect("reports/benchmarks");
    let path = out.join("dataset-load.md");
    std::fs::write(&path, md).expect("write the report");
    eprintln!("wrote {}", path.display());
}

/// What pgx spends that the limit does not: generating rows, the foreign keys, VACUUM.
fn bound_note(r: &Result) -> String {
    let steps: HashMap<String, f64> = phase_medians(&r.pgx).into_iter().collect();
    let generation: f64 = steps
        .iter()
        .filter(|(l, _)| !l.starts_with("bulk load") && *l != "migrations")
        .map(|(_, s)| *s)
        .sum();
    let copy = phase_medians(&r.single)
        .into_iter()
        .find(|(l, _)| l == "COPY FREEZE")
        .map_or(0.0, |(_, s)| s);
    let fk: f64 = r
        .pgx_work
        .iter()
        .filter(|w| w.label == "foreign keys")
        .map(|w| w.seconds)
        .sum();
    let vacuum: f64 = r
        .pgx_work
        .iter()
        .filter(|w| w.label == "VACUUM")
        .map(|w| w.seconds)
        .sum();
    format!(
        "\nWhere pgx's extra time goes: its steps (SQL generation and the COPY of the rows) take {generation:.1} s \
         where the limit's COPY of the same rows takes {copy:.1} s; pgx also validates the foreign keys \
         ({fk:.1} s of connection time) and vacuums the tables it could not load frozen ({vacuum:.1} s), \
         which the limit does not.\n"
    )
}

fn server_version(target: &Target) -> String {
    connect(&target.admin_config())
        .and_then(|mut c| Ok(c.query_one("SHOW server_version", &[])?.get::<_, String>(0)))
        .map(|v| format!("PostgreSQL {v}"))
        .unwrap_or_else(|_| "PostgreSQL ?".into())
}
