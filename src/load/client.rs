//! One simulated client: its connection (statements prepared once), its transactions,
//! its counters. Every await is bounded by a timeout, so a hung server costs at most the
//! timeout per attempt and the client always returns.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, Client, NoTls, Statement};

use super::generate::Source;
use super::result::new_histogram;
use super::spec::{Limits, Pattern};
use crate::db::TextParam;
use crate::error::describe_pg_error;

/// A script ready to run: SQL with `{{vars}}` substituted, generators resolved.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub weight: u32,
    pub pattern: Pattern,
    pub lets: Vec<Source>,
    pub statements: Vec<(String, Vec<Source>)>,
}

/// The scripts of one run and how transactions choose between them.
pub struct Workload {
    pub scripts: Vec<Script>,
    cumulative: Vec<u64>,
}

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
        Workload {
            scripts,
            cumulative,
        }
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let r = rng.u64(..total.max(1));
        self.cumulative
            .iter()
            .position(|&c| r < c)
            .unwrap_or(0)
            .min(self.scripts.len().saturating_sub(1))
    }
}

/// What every client of a run shares (across threads).
pub struct Shared {
    pub config: tokio_postgres::Config,
    pub workload: Arc<Workload>,
    pub limits: Limits,
    /// Client-side bound of one round trip: a little over the server's statement_timeout.
    pub round_trip_bound: Duration,
    /// Bound of connecting and preparing.
    pub connect_bound: Duration,
    /// Measured transactions so far, for progress reports.
    pub measured: AtomicU64,
    /// The caller's observer and stop flag (none by default).
    pub hooks: super::hooks::Hooks,
}

/// When the phases of a run end.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub warmup_end: Instant,
    /// None when the run is a number of transactions.
    pub window_end: Option<Instant>,
}

impl Clock {
    pub fn new(start: Instant, limits: &Limits) -> Clock {
        let warmup_end = start + limits.warmup;
        Clock {
            warmup_end,
            window_end: match limits.length {
                super::spec::Length::Duration(d) => Some(warmup_end + d),
                super::spec::Length::Transactions(_) => None,
            },
        }
    }

    /// In-flight work may finish (or time out) after the window; nothing starts after this.
    fn hard_end(&self, shared: &Shared) -> Option<Instant> {
        self.window_end.map(|end| end + shared.round_trip_bound)
    }
}

/// One client's counters, merged by the driver.
pub struct ClientStats {
    pub histogram: Histogram<u64>,
    pub measured: u64,
    pub warmup: u64,
    pub late: u64,
    pub errors: u64,
    pub timeouts: u64,
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
}

pub const ERROR_SAMPLES: usize = 5;

impl ClientStats {
    pub fn new() -> ClientStats {
        ClientStats {
            histogram: new_histogram(),
            measured: 0,
            warmup: 0,
            late: 0,
            errors: 0,
            timeouts: 0,
            connections: 0,
            round_trips: 0,
            rtt_slept: Duration::ZERO,
            rtt_sleeps: 0,
            error_samples: Vec::new(),
            attempts: 0,
            consecutive_connect_failures: 0,
            last_measured_end: None,
            window_start: None,
        }
    }

    pub fn record_error(&mut self, message: String) {
        self.failure(false, message);
    }

    /// Count a finished attempt by the phase it ended in; true when it was measured.
    fn record(
        &mut self,
        clock: &Clock,
        started: Instant,
        ended: Instant,
        result: &Result<u64, Failure>,
    ) -> bool {
        if ended >= clock.warmup_end {
            self.attempts += 1;
        }
        let round_trips = match result {
            Ok(round_trips) => *round_trips,
            Err(Failure::Server {
                timeout, message, ..
            })
            | Err(Failure::Broken { timeout, message }) => {
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
            let micros = (ended - started).as_micros().max(1);
            self.histogram.saturating_record(micros as u64);
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

/// A connection with the workload's statements prepared on it.
pub struct Conn {
    client: Client,
    task: JoinHandle<()>,
    cancel: CancelToken,
    begin: Statement,
    commit: Statement,
    rollback: Statement,
    /// Per script, per statement.
    statements: Vec<Vec<Statement>>,
}

impl Conn {
    /// Say goodbye properly (a Terminate message), so the server logs no unexpected EOF.
    pub async fn close(self) {
        let Conn { client, task, .. } = self;
        drop(client);
        let abort = task.abort_handle();
        if timeout(Duration::from_secs(1), task).await.is_err() {
            abort.abort();
        }
    }

    /// After a client-side timeout: drop the connection, whose state is unknown, and ask
    /// the server to cancel in the background (bounded), so the client can reconnect now.
    fn abandon(self) {
        let cancel = self.cancel;
        tokio::task::spawn_local(async move {
            let _ = timeout(Duration::from_secs(1), cancel.cancel_query(NoTls)).await;
        });
        self.task.abort();
    }
}

/// Connect and prepare every statement of the workload (one pipelined batch).
pub async fn connect(shared: &Shared) -> Result<Conn, String> {
    let work = async {
        let (client, connection) = shared
            .config
            .connect(NoTls)
            .await
            .map_err(|e| format!("connect: {}", describe_pg_error(&e, None)))?;
        let task = tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        let mut sqls: Vec<&str> = vec!["BEGIN", "COMMIT", "ROLLBACK"];
        for script in &shared.workload.scripts {
            sqls.extend(script.statements.iter().map(|(sql, _)| sql.as_str()));
        }
        type Preparing<'a> =
            Pin<Box<dyn Future<Output = Result<Statement, tokio_postgres::Error>> + 'a>>;
        let futures = sqls
            .iter()
            .map(|sql| Box::pin(client.prepare(sql)) as Preparing)
            .collect();
        let mut prepared = Vec::with_capacity(sqls.len());
        for (sql, result) in sqls.iter().zip(join_in_order(futures).await) {
            match result {
                Ok(statement) => prepared.push(statement),
                Err(e) => {
                    task.abort();
                    return Err(format!("prepare: {}", describe_pg_error(&e, Some(sql))));
                }
            }
        }
        let mut prepared = prepared.into_iter();
        let mut next = || {
            prepared
                .next()
                .ok_or("prepare: statement missing".to_string())
        };
        let (begin, commit, rollback) = (next()?, next()?, next()?);
        let mut statements = Vec::new();
        for script in &shared.workload.scripts {
            statements.push(
                (0..script.statements.len())
                    .map(|_| next())
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(Conn {
            cancel: client.cancel_token(),
            client,
            task,
            begin,
            commit,
            rollback,
            statements,
        })
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
        message: String,
        /// A sequential transaction failed before COMMIT: it needs a ROLLBACK.
        open: bool,
    },
    /// No usable answer (client-side timeout, closed connection): start over.
    Broken { timeout: bool, message: String },
}

/// The client's loop until its run ends. `conn` is the connection made during setup.
pub async fn run(
    shared: Arc<Shared>,
    clock: Clock,
    mut conn: Option<Conn>,
    stats: Rc<RefCell<ClientStats>>,
    mut rng: fastrand::Rng,
) {
    let hard_end = clock.hard_end(&shared);
    stats.borrow_mut().window_start = Some(clock.warmup_end);
    let mut lets: Vec<TextParam> = Vec::new();
    let mut params: Vec<Vec<TextParam>> = Vec::new();
    loop {
        let now = Instant::now();
        if finished(&shared, &clock, now, &stats.borrow()) {
            break;
        }
        let Some(c) = conn.take() else {
            conn = reconnect(&shared, hard_end, &stats).await;
            continue;
        };
        let index = shared.workload.pick(&mut rng);
        let script = &shared.workload.scripts[index];
        lets.clear();
        lets.extend(script.lets.iter().map(|s| s.draw(&mut rng, &[])));
        params.clear();
        params.extend(
            script
                .statements
                .iter()
                .map(|(_, sources)| sources.iter().map(|s| s.draw(&mut rng, &lets)).collect()),
        );
        let started = Instant::now();
        let result = transaction(&shared, &c, index, &params, &stats).await;
        let ended = Instant::now();
        if stats.borrow_mut().record(&clock, started, ended, &result) {
            shared.measured.fetch_add(1, Ordering::Relaxed);
        }
        observe(&shared, &script.name, started, ended, &result);
        conn = match result {
            Ok(_) => Some(c),
            Err(Failure::Server { open, .. }) => recover(&shared, c, open).await,
            Err(Failure::Broken { timeout: true, .. }) => {
                c.abandon();
                None
            }
            Err(Failure::Broken { .. }) => {
                c.task.abort();
                None
            }
        };
    }
    if let Some(c) = conn {
        c.close().await;
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
    if shared.hooks.stopped() {
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
            s.connections += 1;
            s.consecutive_connect_failures = 0;
            Some(conn)
        }
        Err(message) => {
            {
                let mut s = stats.borrow_mut();
                s.failure(false, message);
                s.consecutive_connect_failures += 1;
            }
            let pause = Instant::now() + Duration::from_millis(100);
            sleep_until(hard_end.map_or(pause, |end| pause.min(end)).into()).await;
            None
        }
    }
}

/// After a server error: roll back an open transaction; keep the connection if it works.
async fn recover(shared: &Shared, conn: Conn, open: bool) -> Option<Conn> {
    if conn.client.is_closed() {
        conn.task.abort();
        return None;
    }
    if open {
        let rollback = conn.client.execute(&conn.rollback, &[]);
        match timeout(shared.round_trip_bound, rollback).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                conn.task.abort();
                return None;
            }
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
    conn: &Conn,
    index: usize,
    params: &[Vec<TextParam>],
    stats: &RefCell<ClientStats>,
) -> Result<u64, Failure> {
    let script = &shared.workload.scripts[index];
    let statements = &conn.statements[index];
    let wrapped = statements.len() > 1;
    let refs: Vec<Vec<&(dyn ToSql + Sync)>> =
        params.iter().map(|p| crate::db::as_params(p)).collect();
    let what = |i: Option<usize>| match i {
        Some(i) => format!("script {}, statement {}", script.name, i + 1),
        None => format!("script {}", script.name),
    };
    match script.pattern {
        Pattern::Sequential => {
            let mut trips = 0;
            if wrapped {
                trips += 1;
                round_trip(shared, stats, conn.client.execute(&conn.begin, &[]))
                    .await
                    .map_err(|e| e.into_failure(what(None), true))?;
            }
            for (i, statement) in statements.iter().enumerate() {
                trips += 1;
                let sent = conn.client.execute(statement, &refs[i]);
                round_trip(shared, stats, sent)
                    .await
                    .map_err(|e| e.into_failure(what(Some(i)), wrapped))?;
            }
            if wrapped {
                trips += 1;
                round_trip(shared, stats, conn.client.execute(&conn.commit, &[]))
                    .await
                    .map_err(|e| e.into_failure(what(None), false))?;
            }
            Ok(trips)
        }
        Pattern::Pipelined => {
            // All requests are queued before any answer is awaited: one flush, one round trip.
            type Pending<'a> =
                Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + 'a>>;
            let mut sent: Vec<Pending> = Vec::with_capacity(statements.len() + 2);
            if wrapped {
                sent.push(Box::pin(conn.client.execute(&conn.begin, &[])));
            }
            for (i, statement) in statements.iter().enumerate() {
                sent.push(Box::pin(conn.client.execute(statement, &refs[i])));
            }
            if wrapped {
                sent.push(Box::pin(conn.client.execute(&conn.commit, &[])));
            }
            // The server may spend up to statement_timeout on each of them.
            let bound = shared.round_trip_bound * sent.len() as u32;
            inject_rtt(shared, stats).await;
            let results = timeout(bound, join_in_order(sent))
                .await
                .map_err(|_| RoundTrip::TimedOut(bound).into_failure(what(None), false))?;
            let offset = usize::from(wrapped);
            for (i, result) in results.into_iter().enumerate() {
                if let Err(e) = result {
                    // COMMIT was queued behind the failure, so the transaction is over.
                    let statement = i.checked_sub(offset).filter(|s| *s < statements.len());
                    return Err(RoundTrip::Error(e).into_failure(what(statement), false));
                }
            }
            Ok(1)
        }
    }
}

enum RoundTrip {
    Error(tokio_postgres::Error),
    TimedOut(Duration),
}

impl RoundTrip {
    fn into_failure(self, what: String, open: bool) -> Failure {
        match self {
            RoundTrip::TimedOut(bound) => Failure::Broken {
                timeout: true,
                message: format!(
                    "{what}: no answer within {} ms (client-side timeout; server hung or unreachable)",
                    bound.as_millis()
                ),
            },
            RoundTrip::Error(e) => match e.as_db_error() {
                Some(db) => Failure::Server {
                    timeout: *db.code() == SqlState::QUERY_CANCELED,
                    message: format!("{what}: {}", describe_pg_error(&e, None)),
                    open,
                },
                None => Failure::Broken {
                    timeout: false,
                    message: format!("{what}: {e}"),
                },
            },
        }
    }
}

/// The client-side delay standing in for network latency, before a request is sent.
async fn inject_rtt(shared: &Shared, stats: &RefCell<ClientStats>) {
    if let Some(rtt) = shared.limits.rtt {
        let before = Instant::now();
        sleep(rtt).await;
        let mut s = stats.borrow_mut();
        s.rtt_slept += before.elapsed();
        s.rtt_sleeps += 1;
    }
}

async fn round_trip<F>(
    shared: &Shared,
    stats: &RefCell<ClientStats>,
    request: F,
) -> Result<u64, RoundTrip>
where
    F: Future<Output = Result<u64, tokio_postgres::Error>>,
{
    inject_rtt(shared, stats).await;
    match timeout(shared.round_trip_bound, request).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(RoundTrip::Error(e)),
        Err(_) => Err(RoundTrip::TimedOut(shared.round_trip_bound)),
    }
}

/// Poll futures in order until all are done. Order matters: tokio-postgres sends a
/// request when its future is first polled, so this keeps the statements in order.
pub async fn join_in_order<'a, T>(
    mut futures: Vec<Pin<Box<dyn Future<Output = T> + 'a>>>,
) -> Vec<T> {
    let mut done: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in futures.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *slot = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
