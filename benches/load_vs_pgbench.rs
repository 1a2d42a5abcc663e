//! Is pgx's load driver the bottleneck? It runs pgbench's select-only script next to
//! `pgbench -S -M prepared` on the same database, clients and duration, alternating
//! the two, and writes `reports/benchmarks/load-vs-pgbench.md`.
//!
//! `cargo bench --bench load_vs_pgbench`. Knobs for investigating (the committed report
//! uses the defaults): PGX_BENCH_SECONDS (5), PGX_BENCH_REPEAT (10),
//! PGX_BENCH_CLIENTS (1,8,32,64), PGX_BENCH_THREADS (pgx client threads; default one per CPU),
//! PGX_BENCH_LOCK_SAMPLING (pgx's session sampler period, `off`),
//! PGX_BENCH_OUT (report path), PGX_BENCH_PGX_ONLY (skip pgbench, for profiling pgx).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pgx::cluster::{Cluster, PORT, SUPERUSER};
use pgx::loadtest::{LoadResult, LoadSpec};

const DATABASE: &str = "pgbench_s10";
const SCALE: u32 = 10;
/// pgbench's select-only script, as pgx runs it.
const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

struct Settings {
    seconds: u64,
    repeat: usize,
    clients: Vec<usize>,
    threads: Option<usize>,
    /// Investigation only: pgx's `lock_sampling` (the session sampler's period, or `off`).
    lock_sampling: Option<String>,
    out: PathBuf,
    /// Investigation only: skip pgbench.
    pgx_only: bool,
}

/// One client count's alternations.
struct Row {
    clients: usize,
    pgbench: Vec<f64>,
    pgx: Vec<f64>,
    /// Client CPU time (user + system) per transaction, µs.
    pgbench_cpu_us: Vec<f64>,
    pgx_cpu_us: Vec<f64>,
    /// The system (kernel) part of it, µs.
    pgbench_sys_us: Vec<f64>,
    pgx_sys_us: Vec<f64>,
    /// pgx's own latency view of its runs (last run).
    pgx_p50_ms: f64,
    pgx_p99_ms: f64,
}

fn main() {
    if let Err(err) = bench() {
        eprintln!("load_vs_pgbench: {err:#}");
        std::process::exit(1);
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings = Settings {
        seconds: env_or("PGX_BENCH_SECONDS", 5),
        repeat: env_or("PGX_BENCH_REPEAT", 10),
        clients: std::env::var("PGX_BENCH_CLIENTS")
            .ok()
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 8, 32, 64]),
        threads: std::env::var("PGX_BENCH_THREADS")
            .ok()
            .and_then(|v| v.parse().ok()),
        lock_sampling: std::env::var("PGX_BENCH_LOCK_SAMPLING").ok(),
        out: std::env::var_os("PGX_BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("reports/benchmarks/load-vs-pgbench.md")),
        pgx_only: std::env::var_os("PGX_BENCH_PGX_ONLY").is_some(),
    };
    let cluster = Cluster::new(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("pgx-bench-cluster"))?;
    let _server = cluster.attach()?;
    let pgbench = pgbench_binary(&cluster);
    println!("initialising {DATABASE} (pgbench -i -s {SCALE})");
    initialise(&cluster, &pgbench)?;

    let load_before = loadavg();
    let mut rows = Vec::new();
    // pgx's own view of its last round, one point per client count, as reports show it.
    let mut last_round: Option<LoadResult> = None;
    for &clients in &settings.clients {
        rows.push(Row {
            clients,
            pgbench: Vec::new(),
            pgx: Vec::new(),
            pgbench_cpu_us: Vec::new(),
            pgx_cpu_us: Vec::new(),
            pgbench_sys_us: Vec::new(),
            pgx_sys_us: Vec::new(),
            pgx_p50_ms: 0.0,
            pgx_p99_ms: 0.0,
        });
    }
    for round in 0..settings.repeat {
        for row in rows.iter_mut() {
            // Alternate who goes first, so neither always runs on a warmer machine.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for pgbench_turn in order {
                if pgbench_turn && !settings.pgx_only {
                    let (cpu, sys) = cpu_seconds(libc::RUSAGE_CHILDREN);
                    let tps = run_pgbench(&cluster, &pgbench, row.clients, settings.seconds)?;
                    let (cpu_after, sys_after) = cpu_seconds(libc::RUSAGE_CHILDREN);
                    let per_tx = 1e6 / (tps * settings.seconds as f64);
                    let cpu_us = (cpu_after - cpu) * per_tx;
                    row.pgbench_sys_us.push((sys_after - sys) * per_tx);
                    println!(
                        "round {} · {} clients · pgbench {tps:.0} TPS, {cpu_us:.1} µs CPU/tx",
                        round + 1,
                        row.clients
                    );
                    row.pgbench.push(tps);
                    row.pgbench_cpu_us.push(cpu_us);
                } else if !pgbench_turn {
                    let (cpu, sys) = cpu_seconds(libc::RUSAGE_SELF);
                    let result = run_pgx(&cluster, row.clients, &settings)?;
                    let (cpu_after, sys_after) = cpu_seconds(libc::RUSAGE_SELF);
                    let (cpu, sys) = (cpu_after - cpu, sys_after - sys);
                    let point = result.points.first().context("pgx returned no point")?;
                    if point.errors + point.timeouts > 0 {
                        bail!("pgx saw errors: {:?}", point.error_samples);
                    }
                    let run = point.runs.first().context("pgx returned no run")?;
                    let ran =
                        (run.transactions + run.warmup_transactions + run.late_transactions).max(1);
                    let cpu_us = cpu * 1e6 / ran as f64;
                    row.pgx_sys_us.push(sys * 1e6 / ran as f64);
                    println!(
                        "round {} · {} clients · pgx     {:.0} TPS, {cpu_us:.1} µs CPU/tx",
                        round + 1,
                        row.clients,
                        point.tps_median
                    );
                    row.pgx.push(point.tps_median);
                    row.pgx_cpu_us.push(cpu_us);
                    row.pgx_p50_ms = point.latency_ms.p50;
                    row.pgx_p99_ms = point.latency_ms.p99;
                    if round + 1 == settings.repeat {
                        match &mut last_round {
                            Some(all) => all.points.extend(result.points),
                            None => last_round = Some(result),
                        }
                    }
                }
            }
        }
    }
    let last_round: Vec<(String, LoadResult)> = last_round
        .into_iter()
        .map(|r| ("pgx".to_string(), r))
        .collect();
    let load = format!("{load_before} before, {} after", loadavg());
    let mut report = render(&cluster, &pgbench, &settings, &rows, &load)?;
    report.push_str("\n<details><summary>pgx's own report of its last round</summary>\n\n");
    report.push_str("### pgx, last round\n\n");
    report.push_str(&pgx::report::loadtest::body(&last_round));
    report.push_str("\n</details>\n");
    if let Some(dir) = settings.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&settings.out, report)
        .with_context(|| format!("cannot write {}", settings.out.display()))?;
    println!("{}", pgx::report::loadtest::terminal(&last_round));
    println!("wrote {}", settings.out.display());
    Ok(())
}

fn pgbench_binary(cluster: &Cluster) -> PathBuf {
    let beside_server = cluster.bindir.join("pgbench");
    if beside_server.is_file() {
        beside_server
    } else {
        PathBuf::from("pgbench")
    }
}

fn pgbench_command(cluster: &Cluster, pgbench: &Path) -> Command {
    let mut cmd = Command::new(pgbench);
    cmd.arg("-h")
        .arg(cluster.socket_dir())
        .args(["-p", &PORT.to_string(), "-U", SUPERUSER]);
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"] {
        cmd.env_remove(var);
    }
    cmd
}

fn initialise(cluster: &Cluster, pgbench: &Path) -> Result<()> {
    let mut admin = pgx::target::connect(&cluster.config("postgres"))?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))?;
    admin.batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
    let out = pgbench_command(cluster, pgbench)
        .args(["-i", "-q", "-s", &SCALE.to_string(), DATABASE])
        .output()
        .with_context(|| format!("cannot run {}", pgbench.display()))?;
    if !out.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Everything in shared buffers before the first run, for both drivers alike.
    let mut db = pgx::target::connect(&cluster.config(DATABASE))?;
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_prewarm;
         SELECT pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey');",
    )?;
    Ok(())
}

fn run_pgbench(cluster: &Cluster, pgbench: &Path, clients: usize, seconds: u64) -> Result<f64> {
    let out = pgbench_command(cluster, pgbench)
        .args(["-n", "-S", "-M", "prepared"])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(["-T", &seconds.to_string(), DATABASE])
        .output()
        .context("cannot run pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "tps = 12345.678901 (without initial connection time)"
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no tps line in pgbench output:\n{stdout}"))
}

fn run_pgx(cluster: &Cluster, clients: usize, settings: &Settings) -> Result<LoadResult> {
    let accounts = 100_000 * SCALE;
    let threads = settings
        .threads
        .map(|t| format!("threads: {t}\n"))
        .unwrap_or_default();
    let sampling = settings
        .lock_sampling
        .as_ref()
        .map(|s| format!("lock_sampling: {s}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "clients: [{clients}]
duration: {}s
warmup: 0s
repeat: 1
seed: 1
{threads}{sampling}scripts:
  select-only:
    statements:
      - sql: {SELECT}
        params: [{{uniform: {{min: 1, max: {accounts}}}}}]
",
        settings.seconds
    );
    let spec: LoadSpec = serde_saphyr::from_str(&yaml)?;
    pgx::loadtest::run(&cluster.config(DATABASE), &spec, &[], &mut |_| {})
}

/// User + system CPU seconds, and the system part, of this process (RUSAGE_SELF: pgx's
/// client threads) or of its waited-for children (RUSAGE_CHILDREN: pgbench).
fn cpu_seconds(who: i32) -> (f64, f64) {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return (f64::NAN, f64::NAN);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(usage.ru_utime) + secs(usage.ru_stime),
        secs(usage.ru_stime),
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    pgx::stats::percentile(&sorted, 50.0)
}

fn render(
    cluster: &Cluster,
    pgbench: &Path,
    settings: &Settings,
    rows: &[Row],
    load: &str,
) -> Result<String> {
    let mut md = String::new();
    let _ = writeln!(md, "# Load driver vs pgbench\n");
    let _ = writeln!(
        md,
        "Is pgx's load driver the bottleneck? Both drive pgbench's select-only transaction \
         (`{SELECT}`, `aid` uniform over the {} accounts of scale {SCALE}) against the same \
         database, with the same clients and duration, in the same run, alternating which \
         goes first. pgbench runs `-S -M prepared -n -j min(2, clients) -T {}`; pgx runs \
         the same statement prepared once per connection, {} client threads, no warmup \
         (pgbench has none either).\n",
        fmt_int(100_000 * u64::from(SCALE)),
        settings.seconds,
        settings
            .threads
            .unwrap_or_else(pgx::loadtest::driver::default_threads),
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| Date | {} |",
        pgx::experiment::environment::utc_now_minutes()
    );
    let _ = writeln!(md, "| Machine | {} |", machine());
    let _ = writeln!(
        md,
        "| Load average (1 min) | {load} (other work shares the CPUs) |"
    );
    let _ = writeln!(
        md,
        "| Server | {} (embedded cluster, Unix socket, fsync off) |",
        cluster.version()?
    );
    let _ = writeln!(md, "| pgbench | {} |", command_line(pgbench, "--version"));
    let _ = writeln!(
        md,
        "| pgx | {} (commit {}), {} |",
        env!("CARGO_PKG_VERSION"),
        pgx::experiment::environment::git_commit(),
        command_line(Path::new("rustc"), "--version")
    );
    let _ = writeln!(
        md,
        "| Runs | {} alternations × {} s per driver and client count |\n",
        settings.repeat, settings.seconds
    );
    let _ = writeln!(
        md,
        "| clients | pgbench TPS (median) | pgx TPS (median) | pgx / pgbench (median of rounds) | 95% CI of the median | per round | pgbench runs | pgx runs | client CPU/tx pgbench (kernel part) | client CPU/tx pgx (kernel part) | pgx p50 | pgx p99 |"
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---|---|---|---|---:|---:|---:|---:|"
    );
    let mut verdicts = Vec::new();
    for row in rows {
        let ratios: Vec<f64> = row
            .pgx
            .iter()
            .zip(&row.pgbench)
            .map(|(x, b)| x / b)
            .collect();
        let list = |v: &[f64]| {
            v.iter()
                .map(|t| fmt_int(t.round() as u64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ratio = median(&ratios);
        let ci = ratio_ci(&ratios);
        let _ = writeln!(
            md,
            "| {} | {} | {} | **{:.3}** | {} | {} | {} | {} | {:.1} µs ({:.1}) | {:.1} µs ({:.1}) | {:.3} ms | {:.3} ms |",
            row.clients,
            fmt_int(median(&row.pgbench).round() as u64),
            fmt_int(median(&row.pgx).round() as u64),
            ratio,
            ci.map_or("–".into(), |(lo, hi)| format!("{lo:.3}–{hi:.3}")),
            ratio_list(&ratios),
            list(&row.pgbench),
            list(&row.pgx),
            median(&row.pgbench_cpu_us),
            median(&row.pgbench_sys_us),
            median(&row.pgx_cpu_us),
            median(&row.pgx_sys_us),
            row.pgx_p50_ms,
            row.pgx_p99_ms,
        );
        verdicts.push(Verdict {
            clients: row.clients,
            ratio,
            ci,
            ratios,
            pgbench_tps: median(&row.pgbench),
            pgx_cpu: median(&row.pgx_cpu_us),
            cpu_ratios: row
                .pgx_cpu_us
                .iter()
                .zip(&row.pgbench_cpu_us)
                .map(|(x, b)| x / b)
                .collect(),
            pgx_sys: median(&row.pgx_sys_us),
            pgbench_cpu: median(&row.pgbench_cpu_us),
        });
    }
    let _ = writeln!(
        md,
        "\nThe ratio is pgx's TPS over pgbench's in the same round (rounds alternate who runs \
         first), median over rounds: 1.000 means pgx drives the server exactly as hard as \
         pgbench. Many short alternations rather than a few long ones, so that both drivers \
         meet the same moments of a shared machine. The 95% CI of the median (distribution \
         free: order statistics of the rounds' ratios) says what the rounds can tell: pgx is \
         called behind pgbench only when the whole interval is below 1 (then its numbers \
         would understate what the server can do), ahead only when it is above 1, and at \
         pgbench's level when it holds 1. Client and server share the machine's CPUs, so a \
         client that spends more CPU per transaction leaves less for PostgreSQL: the ratio \
         measures pgx's per-transaction overhead, not the server. Client CPU per \
         transaction (user + system time of the pgbench process, or of pgx's client threads, \
         over the transactions it ran) shows that overhead directly.\n"
    );
    md.push_str(&remaining(&verdicts, pgx::host::cores()));
    Ok(md)
}

/// Where the client CPU goes, each client count's verdict, and, for a client count behind
/// pgbench, what bounds the ratio.
fn remaining(verdicts: &[Verdict], cpus: usize) -> String {
    let mut md = String::from("## Where the client CPU goes\n\n");
    let _ = writeln!(
        md,
        "pgx's client path is one task per connection on a current-thread tokio runtime per \
         client thread, owning its socket: a transaction's Bind/Execute/Sync are written with \
         one `write` from a reused buffer, the answer is read with one `read` and scanned in \
         place, parameters are drawn into the request (no allocation), and one lazily re-armed \
         timer per client bounds every round trip. Per transaction that leaves the kernel's \
         share (the part in brackets: `sendto`, `recvfrom`, `epoll_wait` on a Unix socket, \
         copies checked by hardened usercopy) and, in user space, tokio's scheduling of the \
         woken task, the message scan, the HDR histogram and two clock reads. A profile taken \
         while developing it (`perf record -e cpu-clock`, 8 clients, not part of this run) put \
         58% of the client thread in the kernel and no user-space function above 6%; \
         `strace -c` on the client thread at 1 client counted exactly one `sendto`, one \
         `recvfrom` and one `epoll_wait` per transaction. At 1 client every transaction also \
         puts the thread to sleep and wakes it, which both drivers pay. User-space \
         instructions per transaction (callgrind, 8 clients, one client thread each, the \
         difference of a 3 s and a 6 s run so set-up cancels out): pgx 3,855, pgbench \
         6,239 (`-j 1`, libpq), pgx with tokio-postgres before 13,987: what is left of \
         pgx's CPU is the kernel's socket work, which pgbench pays alike. Client threads: \
         one per CPU by default, as pgbench's `-j` here. The kernel shares a CPU between \
         runnable threads, so with 64 backends runnable a single client thread gets a small \
         share of its core and the server waits for it: with one client thread pgx/pgbench \
         was 0.93 at 8 clients and 0.77 at 64, with two 0.95 and 0.99, at the same client \
         CPU per transaction (3 alternating rounds each, measured while developing it, not \
         part of this run). System calls per transaction at 64 clients (`perf stat -p` on \
         each driver's process for 3 s of a run, measured while developing it, not part of \
         this run): pgx 1.00 `sendto`, 1.00 `recvfrom`, 0.05 `epoll_wait` and 0.23 context \
         switches; pgbench 1.00 `sendto`, 1.65 `recvfrom`, 0.04 `ppoll` and 0.36 context \
         switches; 9.6 µs of task clock per transaction each (with the tracepoints on).\n"
    );
    for v in verdicts {
        let Some((lo, hi)) = v.ci else {
            let _ = writeln!(
                md,
                "- {} clients: ratio {:.3} over {} rounds, too few for a 95% interval of the \
                 median (6 at least): no call.",
                v.clients,
                v.ratio,
                v.ratios.len()
            );
            continue;
        };
        let cpu_ci = ratio_ci(&v.cpu_ratios)
            .map(|(lo, hi)| format!(", 95% CI {lo:.3}–{hi:.3}"))
            .unwrap_or_default();
        let cpu = format!(
            "client CPU per transaction {:.2} µs ({:.2} in the kernel) against pgbench's {:.2} \
             µs, pgx/pgbench {:.3} by round{cpu_ci}",
            v.pgx_cpu,
            v.pgx_sys,
            v.pgbench_cpu,
            median(&v.cpu_ratios)
        );
        if lo > 1.0 {
            let _ = writeln!(
                md,
                "- {} clients: **ahead of pgbench**, ratio {:.3} (95% CI {lo:.3}–{hi:.3}); {cpu}.",
                v.clients, v.ratio
            );
        } else if hi >= 1.0 {
            let _ = writeln!(
                md,
                "- {} clients: **at pgbench's level**, ratio {:.3} (95% CI {lo:.3}–{hi:.3} \
                 holds 1: the rounds cannot tell the drivers apart); {cpu}.",
                v.clients, v.ratio
            );
        } else {
            let _ = writeln!(
                md,
                "- {} clients: **behind pgbench**, ratio {:.3} (95% CI {lo:.3}–{hi:.3}, below \
                 1): {}.",
                v.clients,
                v.ratio,
                behind_cause(v, cpus)
            );
        }
    }
    md.push('\n');
    md
}

/// For a client count behind pgbench: how much of the gap the client's extra CPU explains.
fn behind_cause(v: &Verdict, cpus: usize) -> String {
    let spread = format!("the single rounds' ratios were {}", ratio_list(&v.ratios));
    // With the CPUs saturated, a transaction costs the machine cpus / TPS seconds of CPU;
    // client CPU pgx spends beyond pgbench's is taken from that.
    let machine_us = cpus as f64 * 1e6 / v.pgbench_tps.max(1.0);
    let extra = v.pgx_cpu - v.pgbench_cpu;
    if extra <= 0.0 {
        format!(
            "pgx spent no more client CPU per transaction than pgbench ({:.2} µs, {:.1} of it \
             in the kernel, against {:.2} µs), so the gap is not the client's CPU; {spread}",
            v.pgx_cpu, v.pgx_sys, v.pgbench_cpu
        )
    } else {
        let bound = 1.0 - extra / machine_us;
        format!(
            "pgx spent {extra:.2} µs more client CPU per transaction than pgbench ({:.2} \
             against {:.2} µs) of the {machine_us:.1} µs a transaction costs the machine \
             ({cpus} CPUs over pgbench's TPS), which accounts for a ratio of about {bound:.3}; \
             {spread}",
            v.pgx_cpu, v.pgbench_cpu
        )
    }
}

/// One client count's outcome, for the explanation under the table.
struct Verdict {
    clients: usize,
    /// Median of `ratios`, and its 95% confidence interval (None below 6 rounds).
    ratio: f64,
    ci: Option<(f64, f64)>,
    /// pgx / pgbench TPS, one per round.
    ratios: Vec<f64>,
    pgbench_tps: f64,
    /// Client CPU per transaction, µs (medians over rounds); `pgx_sys` the kernel's part.
    pgx_cpu: f64,
    /// pgx's client CPU per transaction over pgbench's, one per round.
    cpu_ratios: Vec<f64>,
    pgx_sys: f64,
    pgbench_cpu: f64,
}

fn ratio_ci(ratios: &[f64]) -> Option<(f64, f64)> {
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    pgx::stats::median_ci(&sorted, 0.95)
}

fn ratio_list(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| format!("{r:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_int(n: u64) -> String {
    pgx::report::fmt_count(n as i64)
}

fn command_line(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The 1-minute load average: how busy the shared machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = pgx::host::cores();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "{model}, {cpus} CPUs (shared with other work), {memory_gib:.0} GiB, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
