//! One simulated client: its connection (statements prepared once), its transactions,
//! its counters. Every await is bounded by a timeout, so a hung server costs at most the
//! timeout per attempt and the client always returns.
//!
//! The client owns its socket ([`Wire`]): a transaction's messages are written into one
//! buffer and sent with one `write`, answers are scanned in place, parameters are drawn
//! straight into the request, so a transaction allocates nothing.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::time::{Sleep, sleep, sleep_until, timeout};

use super::generate::{LetValues, Source};
use super::result::new_histogram;
use super::spec::{Limits, Pattern};
use super::timer::PreciseTimer;
use super::wire::{QUERY_CANCELED, Startup, Wire};

/// A script ready to run: SQL with `{{vars}}` substituted, generators resolved.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub weight: u32,
    pub pattern: Pattern,
    /// Sessions the request is split over (1: one session).
    pub fanout: usize,
    pub lets: Vec<Source>,
    pub statements: Vec<(String, Vec<Source>)>,
}

/// The scripts of one run and how transactions choose between them.
pub struct Workload {
    pub scripts: Vec<Script>,
    cumulative: Vec<u64>,
    /// Per script, the prepared-statement number of its first statement (0, 1 and 2 are
    /// BEGIN, COMMIT and ROLLBACK).
    first: Vec<usize>,
}

const BEGIN: usize = 0;
const COMMIT: usize = 1;
const ROLLBACK: usize = 2;

impl Workload {
    /// Weights of 0 are never picked, unless every weight is 0 (a script measured alone).
    pub fn new(scripts: Vec<Script>) -> Workload {
        let all_zero = scripts.iter().all(|s| s.weight == 0);
        let mut total = 0;
        let cumulative = scripts
            .iter()
            .map(|s| {
                total += if all_zero { 1 } else { u64::from(s.weight) };
                total
            })
            .collect();
        let mut next = 3;
        let first = scripts
            .iter()
            .map(|s| {
                let at = next;
                next += s.statements.len();
                at
            })
            .collect();
        Workload {
            scripts,
            cumulative,
            first,
        }
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        if self.scripts.len() == 1 {
            return 0;
        }
        let total = self.cumulative.last().copied().unwrap_or(1);
        let r = rng.u64(..total.max(1));
        self.cumulative
            .iter()
            .position(|&c| r < c)
            .unwrap_or(0)
            .min(self.scripts.len().saturating_sub(1))
    }

    /// Sessions a client needs: the widest fan-out of its scripts.
    fn sessions(&self) -> usize {
        self.scripts
            .iter()
            .map(|s| s.fanout)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Every statement to prepare on a connection, in prepared-statement order.
    fn sqls(&self) -> Vec<&str> {
        let mut sqls: Vec<&str> = vec!["BEGIN", "COMMIT", "ROLLBACK"];
        for script in &self.scripts {
            sqls.extend(script.statements.iter().map(|(sql, _)| sql.as_str()));
        }
        sqls
    }
}

/// What every client of a run shares (across threads).
pub struct Shared {
    pub startup: Startup,
    pub workload: Arc<Workload>,
    pub limits: Limits,
    /// A delay the client itself waits before every round trip (`rtt_mode: client`).
    pub client_delay: Option<Duration>,
    /// The network namespace client threads work in (`rtt_mode: netem`).
    pub client_ns: Option<Arc<std::os::fd::OwnedFd>>,
    /// Client-side bound of one round trip: a little over the server's statement_timeout.
    pub round_trip_bound: Duration,
    /// Bound of connecting and preparing.
    pub connect_bound: Duration,
    /// Measured transactions so far, for progress reports.
    pub measured: AtomicU64,
    /// The caller's observer and stop flag (none by default).
    pub hooks: super::hooks::Hooks,
    /// Transactions per second each client starts on a Poisson schedule (a group's
    /// `rate` over its clients); None: as fast as it goes.
    pub rate_per_client: Option<f64>,
}

/// When the phases of a run end.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub warmup_end: Instant,
    /// None when the run is a number of transactions.
    pub window_end: Option<Instant>,
    /// In-flight work may finish (or time out) until then; nothing starts after it.
    pub hard_end: Option<Instant>,
}

impl Clock {
    /// None when the durations are too large to be represented as instants.
    pub fn new(start: Instant, limits: &Limits, round_trip_bound: Duration) -> Option<Clock> {
        let warmup_end = start.checked_add(limits.warmup)?;
        let window_end = match limits.length {
            super::spec::Length::Duration(d) => Some(warmup_end.checked_add(d)?),
            super::spec::Length::Transactions(_) => None,
        };
        let hard_end = match window_end {
            Some(end) => Some(end.checked_add(round_trip_bound)?),
            None => None,
        };
        Some(Clock {
            warmup_end,
            window_end,
            hard_end,
        })
    }
}

/// One client's counters, merged by the driver.
pub struct ClientStats {
    pub histogram: Histogram<u64>,
    /// Per script of a multi-script workload, its measured transactions' latencies (the
    /// same as `histogram`, split): empty for a single script.
    pub by_script: Vec<Histogram<u64>>,
    pub measured: u64,
    pub warmup: u64,
    pub late: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Failures a client would retry: deadlocks (40P01), serialization failures (40001).
    pub deadlocks: u64,
    pub serialization_failures: u64,
    pub connections: u64,
    /// Round trips of measured transactions.
    pub round_trips: u64,
    pub rtt_slept: Duration,
    pub rtt_sleeps: u64,
    pub error_samples: Vec<String>,
    /// Attempts (committed or failed) after the warmup, for `transactions:` runs.
    attempts: u64,
    consecutive_connect_failures: u32,
    pub last_measured_end: Option<Instant>,
    /// When the measured window opened (the end of the warmup).
    pub window_start: Option<Instant>,
    /// The client's first committed transactions (`load.first`), warmup included: when
    /// each started and its latency in microseconds.
    pub first: Vec<(Instant, u64)>,
}

pub const ERROR_SAMPLES: usize = 5;

/// SQLSTATEs of the failures a client would retry.
const DEADLOCK_DETECTED: &str = "40P01";
const SERIALIZATION_FAILURE: &str = "40001";

impl ClientStats {
    pub fn new() -> ClientStats {
        ClientStats {
            histogram: new_histogram(),
            by_script: Vec::new(),
            measured: 0,
            warmup: 0,
            late: 0,
            errors: 0,
            timeouts: 0,
            deadlocks: 0,
            serialization_failures: 0,
            connections: 0,
            round_trips: 0,
            rtt_slept: Duration::ZERO,
            rtt_sleeps: 0,
            error_samples: Vec::new(),
            attempts: 0,
            consecutive_connect_failures: 0,
            last_measured_end: None,
            window_start: None,
            first: Vec::new(),
        }
    }

    pub fn record_error(&mut self, message: String) {
        self.failure(false, message);
    }

    /// Count a finished attempt of script `script` (of `scripts`) by the phase it ended
    /// in; true when it was measured.
    fn record(
        &mut self,
        clock: &Clock,
        (script, scripts): (usize, usize),
        (started, ended): (Instant, Instant),
        first: usize,
        result: &Result<u64, Failure>,
    ) -> bool {
        if result.is_ok() && self.first.len() < first {
            let micros = ended.saturating_duration_since(started).as_micros().max(1);
            self.first
                .push((started, u64::try_from(micros).unwrap_or(u64::MAX)));
        }
        if ended >= clock.warmup_end {
            self.attempts += 1;
        }
        let round_trips = match result {
            Ok(round_trips) => *round_trips,
            Err(Failure::Server {
                timeout,
                code,
                message,
                ..
            }) => {
                match code.as_str() {
                    DEADLOCK_DETECTED => self.deadlocks += 1,
                    SERIALIZATION_FAILURE => self.serialization_failures += 1,
                    _ => {}
                }
                self.failure(*timeout, message.clone());
                return false;
            }
            Err(Failure::Broken { timeout, message }) => {
                self.failure(*timeout, message.clone());
                return false;
            }
        };
        if ended < clock.warmup_end {
            self.warmup += 1;
        } else if clock.window_end.is_some_and(|end| ended > end) {
            self.late += 1;
        } else {
            self.measured += 1;
            self.round_trips += round_trips;
            self.last_measured_end = Some(ended);
            let micros = ended.saturating_duration_since(started).as_micros().max(1);
            let micros = u64::try_from(micros).unwrap_or(u64::MAX);
            self.histogram.saturating_record(micros);
            if scripts > 1 {
                if self.by_script.len() < scripts {
                    self.by_script.resize_with(scripts, new_histogram);
                }
                self.by_script[script].saturating_record(micros);
            }
            return true;
        }
        false
    }

    fn failure(&mut self, is_timeout: bool, message: String) {
        if is_timeout {
            self.timeouts += 1;
        } else {
            self.errors += 1;
        }
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }
}

impl Default for ClientStats {
    fn default() -> Self {
        ClientStats::new()
    }
}

/// A client's connection with the workload's statements prepared on it; with a fan-out
/// script, the further sessions its request is split over.
pub struct Conn {
    wire: Wire,
    more: Vec<Wire>,
}

impl Conn {
    /// Sessions this client holds.
    pub fn sessions(&self) -> u64 {
        1 + self.more.len() as u64
    }

    /// Say goodbye properly (a Terminate message), so the server logs no unexpected EOF.
    pub fn close(self) {
        self.wire.terminate();
        for wire in self.more {
            wire.terminate();
        }
    }

    /// After a client-side timeout: drop the connections, whose state is unknown, and ask
    /// the server to cancel in the background (bounded), so the client can reconnect now.
    fn abandon(self) {
        for wire in std::iter::once(self.wire).chain(self.more) {
            let (endpoint, pid, secret) = (wire.endpoint.clone(), wire.pid, wire.secret);
            drop(wire);
            tokio::task::spawn_local(async move {
                let _ = timeout(
                    Duration::from_secs(1),
                    super::wire::cancel(&endpoint, pid, secret),
                )
                .await;
            });
        }
    }
}

/// Connect and prepare every statement of the workload (one round trip), on as many
/// sessions as the widest fan-out needs.
pub async fn connect(shared: &Shared) -> Result<Conn, String> {
    let one = async || {
        let mut wire = Wire::connect(&shared.startup)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let sqls = shared.workload.sqls();
        let reply = wire
            .prepare(&sqls)
            .await
            .map_err(|e| format!("prepare: {e}"))?;
        if let Some(error) = reply.error {
            let sql = sqls.get(reply.parsed).copied();
            return Err(format!("prepare: {}", error.describe(sql)));
        }
        Ok(wire)
    };
    let work = async {
        let wire = one().await?;
        let mut more = Vec::new();
        for _ in 1..shared.workload.sessions() {
            more.push(one().await?);
        }
        Ok(Conn { wire, more })
    };
    match timeout(shared.connect_bound, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "connect: no answer within {} ms",
            shared.connect_bound.as_millis()
        )),
    }
}

/// Why a transaction failed, and what that says about the connection.
enum Failure {
    /// The server answered with an error; the connection still works.
    Server {
        timeout: bool,
        /// Its SQLSTATE: deadlocks and serialization failures are counted apart.
        code: String,
        message: String,
        /// The session is still inside a (failed) transaction block: it needs a ROLLBACK.
        open: bool,
    },
    /// No usable answer (client-side timeout, closed connection): start over.
    Broken { timeout: bool, message: String },
}

/// A client's reusable state between transactions.
struct Local {
    lets: LetValues,
    /// For `rtt_mode: client`, made on first use.
    timer: Option<PreciseTimer>,
    /// The client's one timeout timer, re-armed lazily: a round trip only notes its
    /// deadline, and the timer is moved when it fires early. A timer per round trip
    /// (tokio's `timeout`) costs a timer-wheel insert and removal per statement.
    watchdog: Pin<Box<Sleep>>,
}

/// The client's loop until its run ends. `conn` is the connection made during setup.
pub async fn run(
    shared: Arc<Shared>,
    clock: Clock,
    mut conn: Option<Conn>,
    stats: Rc<RefCell<ClientStats>>,
    mut rng: fastrand::Rng,
) {
    stats.borrow_mut().window_start = Some(clock.warmup_end);
    let mut local = Local {
        lets: LetValues::default(),
        timer: None,
        watchdog: Box::pin(sleep(shared.round_trip_bound)),
    };
    let mut now = Instant::now();
    // With a rate, transactions start on a Poisson schedule (as pgbench --rate does) and
    // latency counts from the scheduled start: a client that falls behind shows it.
    let mut scheduled = now;
    loop {
        if finished(&shared, &clock, now, &stats.borrow()) {
            break;
        }
        let Some(mut c) = conn.take() else {
            conn = reconnect(&shared, clock.hard_end, &stats).await;
            now = Instant::now();
            continue;
        };
        let mut from = None;
        if let Some(rate) = shared.rate_per_client {
            let gap = -(1.0 - rng.f64()).ln() / rate;
            scheduled += Duration::from_secs_f64(gap.min(3600.0));
            if scheduled > now {
                sleep_until(scheduled.into()).await;
            }
            from = Some(scheduled);
            now = Instant::now();
            if finished(&shared, &clock, now, &stats.borrow()) {
                conn = Some(c);
                break;
            }
        }
        let index = shared.workload.pick(&mut rng);
        let started = Instant::now();
        let result = transaction(
            &shared, &mut c, index, started, &mut rng, &mut local, &stats,
        )
        .await;
        let ended = Instant::now();
        now = ended;
        // Latency from the scheduled start when there is a rate (never later than sent).
        let since = from.map_or(started, |f| f.min(started));
        let scripts = (index, shared.workload.scripts.len());
        if stats.borrow_mut().record(
            &clock,
            scripts,
            (since, ended),
            shared.limits.first,
            &result,
        ) {
            shared.measured.fetch_add(1, Ordering::Relaxed);
        }
        observe(
            &shared,
            &shared.workload.scripts[index].name,
            started,
            ended,
            &result,
        );
        conn = match result {
            Ok(_) => Some(c),
            Err(Failure::Server { open, .. }) => {
                let kept = recover(&shared, c, open).await;
                now = Instant::now();
                kept
            }
            Err(Failure::Broken { timeout: true, .. }) => {
                c.abandon();
                None
            }
            Err(Failure::Broken { .. }) => None,
        };
    }
    if let Some(c) = conn {
        c.close();
    }
}

/// Tell the caller's observer, if any, how the attempt ended.
fn observe(
    shared: &Shared,
    script: &str,
    started: Instant,
    ended: Instant,
    result: &Result<u64, Failure>,
) {
    use super::hooks::{Outcome, TxEvent};
    if shared.hooks.observer.is_none() {
        return;
    }
    let (outcome, error) = match result {
        Ok(_) => (Outcome::Committed, None),
        Err(
            Failure::Server {
                timeout, message, ..
            }
            | Failure::Broken { timeout, message },
        ) => (
            if *timeout {
                Outcome::Timeout
            } else {
                Outcome::Error
            },
            Some(message.as_str()),
        ),
    };
    shared.hooks.observe(&TxEvent {
        script,
        started,
        ended,
        outcome,
        error,
    });
}

fn finished(shared: &Shared, clock: &Clock, now: Instant, stats: &ClientStats) -> bool {
    if crate::interrupt::is_interrupted() || shared.hooks.stopped() {
        return true;
    }
    match (clock.window_end, shared.limits.length) {
        (Some(end), _) => now >= end,
        (None, super::spec::Length::Transactions(n)) => {
            // A dead server in a `transactions:` run: give up instead of retrying n times.
            stats.attempts >= n || stats.consecutive_connect_failures >= 5
        }
        (None, super::spec::Length::Duration(_)) => true,
    }
}

/// Connect again after a failure, counting a failed attempt as an error and pausing a
/// little so a dead server is not hammered.
async fn reconnect(
    shared: &Shared,
    hard_end: Option<Instant>,
    stats: &RefCell<ClientStats>,
) -> Option<Conn> {
    let attempt = connect(shared);
    let result = match hard_end {
        Some(end) => match tokio::time::timeout_at(end.into(), attempt).await {
            Ok(result) => result,
            Err(_) => return None, // the run is over; the loop ends
        },
        None => attempt.await,
    };
    match result {
        Ok(conn) => {
            let mut s = stats.borrow_mut();
            s.connections += conn.sessions();
            s.consecutive_connect_failures = 0;
            Some(conn)
        }
        Err(message) => {
            {
                let mut s = stats.borrow_mut();
                s.failure(false, message);
                s.consecutive_connect_failures += 1;
            }
            let now = Instant::now();
            let pause = now.checked_add(Duration::from_millis(100)).unwrap_or(now);
            sleep_until(hard_end.map_or(pause, |end| pause.min(end)).into()).await;
            None
        }
    }
}

/// After a server error: roll back an open transaction; keep the connection if it works.
async fn recover(shared: &Shared, mut conn: Conn, open: bool) -> Option<Conn> {
    if open {
        conn.wire.clear();
        conn.wire.put_execute(ROLLBACK, 0, |_, _| true);
        conn.wire.put_sync();
        match timeout(shared.round_trip_bound, conn.wire.exchange(1)).await {
            Ok(Ok(reply)) if reply.error.is_none() => {}
            Ok(_) => return None,
            Err(_) => {
                conn.abandon();
                return None;
            }
        }
    }
    Some(conn)
}

/// Run one script as one transaction; the number of round trips it took.
async fn transaction(
    shared: &Shared,
    conn: &mut Conn,
    index: usize,
    started: Instant,
    rng: &mut fastrand::Rng,
    local: &mut Local,
    stats: &RefCell<ClientStats>,
) -> Result<u64, Failure> {
    let script = &shared.workload.scripts[index];
    let first = shared.workload.first[index];
    let wrapped = script.statements.len() > 1;
    let what = |i: Option<usize>| match i {
        Some(i) => format!("script {}, statement {}", script.name, i + 1),
        None => format!("script {}", script.name),
    };
    let Local {
        lets,
        timer,
        watchdog,
    } = local;
    let mut trip = Trip { timer, watchdog };
    lets.draw(&script.lets, rng);
    if script.fanout > 1 {
        let mut trip = trip;
        return fan_out(
            shared, conn, script, first, rng, lets, &mut trip, stats, started,
        )
        .await
        .map_err(|(e, slice)| e.into_failure(format!("script {}, slice {slice}", script.name)));
    }
    let wire = &mut conn.wire;
    let mut sent = Some(started);
    match script.pattern {
        Pattern::Sequential => {
            // BEGIN (when wrapped), every statement, COMMIT: one round trip each.
            let trips = script.statements.len() + if wrapped { 2 } else { 0 };
            for trip_no in 0..trips {
                let statement = if wrapped {
                    trip_no
                        .checked_sub(1)
                        .filter(|i| *i < script.statements.len())
                } else {
                    Some(trip_no)
                };
                wire.clear();
                match statement {
                    Some(i) => {
                        let sources = &script.statements[i].1;
                        wire.put_execute(first + i, sources.len(), |j, out| {
                            sources[j].draw_into(rng, lets, Some(out))
                        });
                    }
                    None if trip_no == 0 => wire.put_execute(BEGIN, 0, |_, _| true),
                    None => wire.put_execute(COMMIT, 0, |_, _| true),
                }
                wire.put_sync();
                round_trip(
                    shared,
                    wire,
                    &mut trip,
                    stats,
                    sent.take(),
                    shared.round_trip_bound,
                )
                .await
                .map_err(|e| e.into_failure(what(statement)))?;
            }
            Ok(trips as u64)
        }
        Pattern::Pipelined => {
            // BEGIN, every statement and COMMIT in one buffer, one write and one Sync: the
            // server answers them in one flush, as libpq's pipeline mode (psycopg's
            // `conn.pipeline()`) does.
            wire.clear();
            if wrapped {
                wire.put_execute(BEGIN, 0, |_, _| true);
            }
            for (i, (_, sources)) in script.statements.iter().enumerate() {
                wire.put_execute(first + i, sources.len(), |j, out| {
                    sources[j].draw_into(rng, lets, Some(out))
                });
            }
            if wrapped {
                wire.put_execute(COMMIT, 0, |_, _| true);
            }
            wire.put_sync();
            // The server may spend up to statement_timeout on each of them.
            let messages = script.statements.len() as u32 + if wrapped { 2 } else { 0 };
            let bound = shared
                .round_trip_bound
                .checked_mul(messages)
                .unwrap_or(Duration::MAX);
            match round_trip(shared, wire, &mut trip, stats, sent.take(), bound).await {
                Ok(()) => Ok(1),
                Err(RoundTrip::Server(error, completed, status)) => {
                    let statement = completed
                        .checked_sub(usize::from(wrapped))
                        .filter(|s| *s < script.statements.len());
                    Err(RoundTrip::Server(error, completed, status).into_failure(what(statement)))
                }
                Err(other) => Err(other.into_failure(what(None))),
            }
        }
    }
}

/// A fan-out request: the statements in `script.fanout` contiguous slices, each
/// pipelined on a session of its own (one implicit transaction per slice: the statements
/// up to its Sync), all sent at once; done when the last slice's answers are in. One
/// round trip. The first slice that failed, with its number (from 1), on error.
#[allow(clippy::too_many_arguments)]
async fn fan_out(
    shared: &Shared,
    conn: &mut Conn,
    script: &Script,
    first: usize,
    rng: &mut fastrand::Rng,
    lets: &mut LetValues,
    trip: &mut Trip<'_>,
    stats: &RefCell<ClientStats>,
    started: Instant,
) -> Result<u64, (RoundTrip, usize)> {
    let n = script.statements.len();
    let per = n.div_ceil(script.fanout);
    let wires: Vec<&mut Wire> = std::iter::once(&mut conn.wire)
        .chain(conn.more.iter_mut())
        .collect();
    let mut used = 0;
    let mut sending = Vec::new();
    for (k, wire) in wires.into_iter().enumerate() {
        let from = k * per;
        if from >= n {
            break;
        }
        let to = (from + per).min(n);
        wire.clear();
        for i in from..to {
            let sources = &script.statements[i].1;
            wire.put_execute(first + i, sources.len(), |j, out| {
                sources[j].draw_into(rng, lets, Some(out))
            });
        }
        wire.put_sync();
        used = used.max(to - from);
        sending.push(wire);
    }
    // The client-side delay once: the slices travel side by side.
    let mut sent = Some(started);
    if let Some(delay) = shared.client_delay {
        let before = Instant::now();
        if trip.timer.is_none() {
            *trip.timer = Some(PreciseTimer::new().map_err(|e| (RoundTrip::Io(e), 1))?);
        }
        if let Some(timer) = trip.timer.as_ref() {
            timer
                .sleep(delay)
                .await
                .map_err(|e| (RoundTrip::Io(e), 1))?;
        }
        let mut s = stats.borrow_mut();
        s.rtt_slept += before.elapsed();
        s.rtt_sleeps += 1;
        sent = None;
    }
    let sent = sent.unwrap_or_else(Instant::now);
    let bound = shared
        .round_trip_bound
        .checked_mul(used as u32)
        .unwrap_or(Duration::MAX);
    let all = futures_util::future::join_all(sending.into_iter().map(|w| w.exchange(1)));
    let replies = match sent.checked_add(bound) {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), all)
            .await
            .map_err(|_| (RoundTrip::TimedOut(bound), 1))?,
        None => all.await,
    };
    for (k, reply) in replies.into_iter().enumerate() {
        match reply {
            Ok(reply) => {
                if let Some(error) = reply.error {
                    return Err((
                        RoundTrip::Server(Box::new(error), reply.completed, reply.status),
                        k + 1,
                    ));
                }
            }
            Err(e) => return Err((RoundTrip::Io(e), k + 1)),
        }
    }
    Ok(1)
}

enum RoundTrip {
    /// The server's error, how many statements completed before it, the session's
    /// transaction status after it.
    Server(Box<super::wire::ServerError>, usize, u8),
    Io(std::io::Error),
    TimedOut(Duration),
}

impl RoundTrip {
    fn into_failure(self, what: String) -> Failure {
        match self {
            RoundTrip::TimedOut(bound) => Failure::Broken {
                timeout: true,
                message: format!(
                    "{what}: no answer within {} ms (client-side timeout; server hung or unreachable)",
                    bound.as_millis()
                ),
            },
            RoundTrip::Server(error, _, status) => Failure::Server {
                timeout: error.code == QUERY_CANCELED,
                code: error.code.clone(),
                message: format!("{what}: {}", error.describe(None)),
                open: status != b'I',
            },
            RoundTrip::Io(e) => Failure::Broken {
                timeout: false,
                message: format!("{what}: {e}"),
            },
        }
    }
}

/// The parts of [`Local`] a round trip uses.
struct Trip<'a> {
    timer: &'a mut Option<PreciseTimer>,
    watchdog: &'a mut Pin<Box<Sleep>>,
}

/// Send the request built in `wire` and wait, at most `bound` after `sent` (now when
/// None), for its answers; after the client-side delay when `rtt_mode: client`.
async fn round_trip(
    shared: &Shared,
    wire: &mut Wire,
    trip: &mut Trip<'_>,
    stats: &RefCell<ClientStats>,
    sent: Option<Instant>,
    bound: Duration,
) -> Result<(), RoundTrip> {
    let mut sent = sent;
    if let Some(delay) = shared.client_delay {
        let before = Instant::now();
        if trip.timer.is_none() {
            *trip.timer = Some(PreciseTimer::new().map_err(RoundTrip::Io)?);
        }
        if let Some(timer) = trip.timer.as_ref() {
            timer.sleep(delay).await.map_err(RoundTrip::Io)?;
        }
        let mut s = stats.borrow_mut();
        s.rtt_slept += before.elapsed();
        s.rtt_sleeps += 1;
        sent = None;
    }
    let sent = sent.unwrap_or_else(Instant::now);
    // No deadline for bounds beyond the clock's range: they cannot be reached anyway.
    let deadline = sent.checked_add(bound);
    let exchange = wire.exchange(1);
    let mut exchange = std::pin::pin!(exchange);
    let watchdog = &mut *trip.watchdog;
    let outcome = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        loop {
            if watchdog.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            // Fired for an earlier round trip: move it to this one's deadline.
            watchdog.as_mut().reset(deadline.into());
        }
    })
    .await;
    match outcome {
        Some(Ok(reply)) => match reply.error {
            None => Ok(()),
            Some(error) => Err(RoundTrip::Server(
                Box::new(error),
                reply.completed,
                reply.status,
            )),
        },
        Some(Err(e)) => Err(RoundTrip::Io(e)),
        None => Err(RoundTrip::TimedOut(bound)),
    }
}
