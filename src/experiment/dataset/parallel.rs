//! Parallel steps: one `INSERT ... SELECT` split into chunks (`{{lo}}`..`{{hi}}` of
//! `parallel.range`, or `{{chunk}}` of `{{chunks}}`).
//!
//! **Same rows, whatever runs them.** The number of chunks is fixed by the step (default
//! 16), not by the number of connections, and every chunk starts with
//! `setseed(s)`, `s` derived from the step's name and the chunk's bounds: `random()` draws
//! the same values in a chunk whether the chunks run one after another in the loading
//! session (the plain path) or over N connections (the bulk path), for any N. After the
//! step the loading session is re-seeded from the step's name, so the steps after it draw
//! the same values on both paths too.
//!
//! **Same order.** On the bulk path each chunk's SELECT runs as `COPY (...) TO STDOUT
//! (FORMAT binary)` on a connection of its own, and pgx streams the chunks, in chunk
//! order, into one `COPY table FROM STDIN (FORMAT binary)` in the loading session: the
//! table receives the rows in exactly the order the plain path inserts them (the physical
//! order BRIN indexes and correlation statistics see). Chunks a connection finishes early
//! wait in memory (a bounded budget; the chunk being written is never held back). The
//! target is truncated in the COPY's transaction when it is empty (with `wal_level =
//! minimal` its rows skip WAL) and, when it is not partitioned, loaded with `FREEZE`
//! (rows frozen, visibility map set: no VACUUM needed).
//!
//! The generators cast every column to the target column's type, which is the value the
//! INSERT's assignment would store for every row the INSERT accepts.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use postgres::Client;
use sha2::{Digest, Sha256};
use squawk_syntax::ast::{self, AstNode};

use crate::error::{Interrupted, fail};

pub const DEFAULT_CHUNKS: u32 = 16;
/// Generated rows held in memory ahead of the writer, at most (plus the blocks in flight).
const BUFFER_BUDGET: usize = 512 << 20;
const BLOCK: usize = 1 << 20;
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: &[u8] = &[0xff, 0xff];

/// One chunk of a parallel step.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub index: u32,
    pub count: u32,
    /// `{{lo}}`/`{{hi}}`, when the step has a range.
    pub bounds: Option<(i64, i64)>,
    pub seed: f64,
}

impl Chunk {
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("chunk".to_string(), self.index.to_string()),
            ("chunks".to_string(), self.count.to_string()),
        ];
        if let Some((lo, hi)) = self.bounds {
            vars.push(("lo".into(), lo.to_string()));
            vars.push(("hi".into(), hi.to_string()));
        }
        vars
    }

    pub fn describe(&self) -> String {
        match self.bounds {
            Some((lo, hi)) => format!(
                "chunk {} of {} ({{{{lo}}}} = {lo}, {{{{hi}}}} = {hi})",
                self.index + 1,
                self.count
            ),
            None => format!("chunk {} of {}", self.index + 1, self.count),
        }
    }
}

/// The chunks of a step: `count` of them over the inclusive `range` (fewer when the range
/// is shorter), or `count` numbered ones.
pub fn chunks(step: &str, range: Option<(i64, i64)>, count: u32) -> Result<Vec<Chunk>> {
    let count = count.max(1);
    let make = |index: u32, n: u32, bounds: Option<(i64, i64)>| Chunk {
        index,
        count: n,
        bounds,
        seed: seed(&format!("chunk\0{step}\0{index}\0{n}\0{bounds:?}")),
    };
    let Some((first, last)) = range else {
        return Ok((0..count).map(|i| make(i, count, None)).collect());
    };
    let len = i128::from(last) - i128::from(first) + 1;
    if len <= 0 {
        // An empty range: the step runs once, over nothing.
        return Ok(vec![make(0, 1, Some((first, last)))]);
    }
    let n = i128::from(count).min(len);
    let n32 = u32::try_from(n).context("chunk count")?;
    (0..n)
        .map(|i| {
            let lo = i128::from(first) + i * len / n;
            let hi = i128::from(first) + (i + 1) * len / n - 1;
            let bound = |v: i128| i64::try_from(v).context("chunk bound outside bigint");
            Ok(make(
                u32::try_from(i).context("chunk index")?,
                n32,
                Some((bound(lo)?, bound(hi)?)),
            ))
        })
        .collect()
}

/// A `setseed()` argument in [-1, 1) from a text (SHA-256: the same on every platform).
pub fn seed(text: &str) -> f64 {
    let digest = Sha256::digest(format!("pgx-seed-v1\0{text}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let bits = u64::from_be_bytes(bytes) >> 11;
    (bits as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// A parallel step's SQL, taken apart: session settings, then one INSERT ... SELECT.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertSelect {
    /// `SET ...` statements before the INSERT (run on every generator connection).
    pub settings: Vec<String>,
    /// The target as written (`dms.reference`).
    pub table: String,
    /// The target columns as written, `None` for all of them.
    pub columns: Option<Vec<String>>,
    /// `WITH ...` written before INSERT, if any.
    pub with: Option<String>,
    /// The SELECT (or VALUES) that produces the rows, and where it starts in the step's
    /// SQL (characters, for error positions).
    pub source: String,
    pub source_at: usize,
    pub with_at: usize,
}

/// Take a parallel step apart. The error says what shape is needed.
pub fn parse_insert(sql: &str) -> std::result::Result<InsertSelect, String> {
    let shape = "a parallel step must be one `INSERT INTO table (columns) SELECT ...`, optionally with SET / RESET statements around it";
    let statements = crate::sqlsplit::split(sql);
    let mut settings = Vec::new();
    let mut insert = None;
    for statement in &statements {
        let first = statement
            .sql
            .split(|c: char| c.is_whitespace() || c == ';')
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match first.as_str() {
            "SET" | "RESET" if insert.is_none() => settings.push(statement.sql.clone()),
            "SET" | "RESET" => {}
            _ if insert.is_none() => insert = Some(statement),
            _ => return Err(format!("{shape}; this one has several other statements")),
        }
    }
    let Some(statement) = insert else {
        return Err(format!("{shape}; this one has none"));
    };
    let parse = squawk_syntax::SourceFile::parse(&statement.sql);
    if let Some(error) = parse.errors().first() {
        return Err(format!("cannot parse the step's INSERT: {error:?}"));
    }
    let file = parse.tree();
    let Some(ast::Stmt::Insert(ins)) = file.stmts().next() else {
        return Err(format!("{shape}; this one is not an INSERT"));
    };
    if ins.on_conflict_clause().is_some() || ins.returning_clause().is_some() {
        return Err(format!(
            "{shape}; ON CONFLICT and RETURNING cannot be streamed through COPY"
        ));
    }
    if let Some(overriding) = ins.overriding_clause()
        && overriding
            .syntax()
            .text()
            .to_string()
            .to_ascii_uppercase()
            .contains("USER")
    {
        return Err(format!(
            "{shape}; OVERRIDING USER VALUE cannot be streamed through COPY"
        ));
    }
    let table = ins
        .relation_name_ref()
        .map(|r| r.syntax().text().to_string().trim().to_string())
        .ok_or_else(|| format!("{shape}; no target table found"))?;
    let columns = match ins.column_target_list() {
        None => None,
        Some(list) => {
            let mut names = Vec::new();
            for target in list.column_targets() {
                if target.accessors().next().is_some() {
                    return Err(format!(
                        "{shape}; subscripted or field targets cannot be streamed through COPY"
                    ));
                }
                names.push(target.syntax().text().to_string().trim().to_string());
            }
            Some(names)
        }
    };
    let Some(ast::InsertSource::SelectVariant(source)) = ins.insert_source() else {
        return Err(format!("{shape}; DEFAULT VALUES has nothing to stream"));
    };
    let to_chars = |byte: usize| statement.sql[..byte].chars().count();
    let base = sql[..statement.offset].chars().count();
    let range = source.syntax().text_range();
    let (start, end) = (
        u32::from(range.start()) as usize,
        u32::from(range.end()) as usize,
    );
    let with = ins.with_clause().map(|w| {
        let r = w.syntax().text_range();
        let (s, e) = (u32::from(r.start()) as usize, u32::from(r.end()) as usize);
        (statement.sql[s..e].to_string(), base + to_chars(s))
    });
    Ok(InsertSelect {
        settings,
        table,
        columns,
        with_at: with.as_ref().map_or(0, |w| w.1),
        with: with.map(|w| w.0),
        source: statement.sql[start..end].to_string(),
        source_at: base + to_chars(start),
    })
}

/// Fold an identifier as PostgreSQL does: quoted kept (`""` → `"`), else ASCII lower case.
pub fn fold_ident(name: &str) -> String {
    let name = name.trim();
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    }
}

/// How one parallel step is streamed.
pub struct Relay {
    /// `COPY table (columns) FROM STDIN (FORMAT binary[, FREEZE])`.
    pub copy_in: String,
    /// `TRUNCATE table`, when it was empty.
    pub truncate: Option<String>,
    /// Per chunk: the generator's `COPY (...) TO STDOUT`, its seed and its description.
    pub generators: Vec<Generator>,
    pub settings: Vec<String>,
    pub connections: usize,
    pub config: postgres::Config,
}

pub struct Generator {
    pub sql: String,
    pub seed: f64,
    pub what: String,
    /// The chunk's SQL as the user wrote it (placeholders filled) and where in it the
    /// wrapped text starts, to place the server's error positions.
    pub step_sql: String,
    pub map: PositionMap,
}

/// Where the parts of a generated statement came from in the step's SQL.
#[derive(Debug, Clone, Default)]
pub struct PositionMap {
    /// (start in the generated SQL, length, start in the step's SQL), in characters.
    pub pieces: Vec<(usize, usize, usize)>,
}

impl PositionMap {
    pub fn to_step(&self, position: usize) -> Option<usize> {
        self.pieces
            .iter()
            .find(|(at, len, _)| position > *at && position <= at + len)
            .map(|(at, _, step_at)| position - at + step_at)
    }
}

/// The generator's text for one chunk: every column cast to its target type.
pub fn generator_sql(parts: &InsertSelect, types: &[String]) -> (String, PositionMap) {
    let mut sql = String::from("COPY (");
    let mut map = PositionMap::default();
    if let Some(with) = &parts.with {
        map.pieces
            .push((sql.chars().count(), with.chars().count(), parts.with_at));
        sql.push_str(with);
        sql.push('\n');
    }
    let casts: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("pgx_q.c{i}::{t}"))
        .collect();
    sql.push_str(&format!("SELECT {} FROM (\n", casts.join(", ")));
    map.pieces.push((
        sql.chars().count(),
        parts.source.chars().count(),
        parts.source_at,
    ));
    sql.push_str(&parts.source);
    let aliases: Vec<String> = (0..types.len()).map(|i| format!("c{i}")).collect();
    sql.push_str(&format!(
        "\n) AS pgx_q ({})) TO STDOUT (FORMAT binary)",
        aliases.join(", ")
    ));
    (sql, map)
}

enum Piece {
    Data(Vec<u8>),
    End,
}

struct Queues {
    queues: Vec<VecDeque<Piece>>,
    buffered: usize,
    /// The chunk the writer is copying now: never held back by the budget.
    current: usize,
    /// The writer failed or was interrupted: generators stop.
    stop: bool,
    /// A generator failed: the writer stops.
    failed: Option<anyhow::Error>,
    tokens: Vec<Option<tokio_postgres::CancelToken>>,
}

/// Stream every chunk, in order, into `COPY ... FROM STDIN` on `session` (the loading
/// session), inside a transaction. Returns the rows written.
pub fn run(relay: &Relay, session: &mut Client) -> Result<u64> {
    let n = relay.connections.clamp(1, relay.generators.len().max(1));
    let queues = Mutex::new(Queues {
        queues: (0..n).map(|_| VecDeque::new()).collect(),
        buffered: 0,
        current: 0,
        stop: false,
        failed: None,
        tokens: vec![None; n],
    });
    let wake = Condvar::new();
    let result = std::thread::scope(|scope| {
        for slot in 0..n {
            let (queues, wake) = (&queues, &wake);
            let mine: Vec<(usize, &Generator)> = relay
                .generators
                .iter()
                .enumerate()
                .filter(|(i, _)| i % n == slot)
                .collect();
            scope.spawn(move || {
                if let Err(e) = generator_thread(relay, slot, &mine, queues, wake) {
                    fail_with(queues, wake, e);
                }
            });
        }
        let written = write(relay, session, n, &queues, &wake);
        if written.is_err() {
            stop_generators(&queues, &wake);
        }
        written
    });
    match result {
        Ok(rows) => Ok(rows),
        Err(err) => {
            let _ = session.batch_execute("ROLLBACK");
            Err(err)
        }
    }
}

fn stop_generators(queues: &Mutex<Queues>, wake: &Condvar) {
    let tokens: Vec<tokio_postgres::CancelToken> = match queues.lock() {
        Ok(mut q) => {
            q.stop = true;
            q.tokens.iter().flatten().cloned().collect()
        }
        Err(_) => Vec::new(),
    };
    wake.notify_all();
    if tokens.is_empty() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        for token in tokens {
            let _ = runtime.block_on(token.cancel_query(tokio_postgres::NoTls));
        }
    }
}

fn fail_with(queues: &Mutex<Queues>, wake: &Condvar, error: anyhow::Error) {
    if let Ok(mut q) = queues.lock()
        && q.failed.is_none()
    {
        q.failed = Some(error);
    }
    wake.notify_all();
}

/// One generator connection: its own runtime, its share of the chunks (every n-th).
fn generator_thread(
    relay: &Relay,
    slot: usize,
    chunks: &[(usize, &Generator)],
    queues: &Mutex<Queues>,
    wake: &Condvar,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a generator's runtime")?;
    runtime.block_on(async {
        let config = crate::loadtest::driver::async_config(&relay.config, Duration::from_secs(1));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
            fail(
                format!(
                    "parallel step: cannot open a generator connection: {}",
                    crate::error::describe_pg_error(&e, None)
                ),
                "the server may limit connections (max_connections); parallel steps use one per core",
            )
        })?;
        let connection = tokio::spawn(connection);
        if let Ok(mut q) = queues.lock()
            && let Some(token) = q.tokens.get_mut(slot)
        {
            *token = Some(client.cancel_token());
        }
        let mut setup = String::from(
            "SET statement_timeout = 0; SET jit = off; SET application_name = 'pgx dataset';",
        );
        for setting in &relay.settings {
            setup.push_str(setting);
            setup.push(';');
        }
        let outcome = async {
            client.batch_execute(&setup).await.map_err(|e| {
                anyhow::anyhow!(
                    "parallel step: the step's settings failed on a generator connection: {}",
                    crate::error::describe_pg_error(&e, Some(&setup))
                )
            })?;
            for (index, generator) in chunks {
                if !generate_chunk(&client, generator, slot, *index, queues, wake).await? {
                    break;
                }
                if !push(queues, wake, slot, *index, Piece::End) {
                    break;
                }
            }
            anyhow::Ok(())
        }
        .await;
        drop(client);
        let _ = connection.await;
        outcome
    })
}

/// `Ok(false)` when the writer asked the generators to stop.
async fn generate_chunk(
    client: &tokio_postgres::Client,
    generator: &Generator,
    slot: usize,
    index: usize,
    queues: &Mutex<Queues>,
    wake: &Condvar,
) -> Result<bool> {
    let describe = |e: &tokio_postgres::Error| describe_generator_error(e, generator);
    client
        .execute("SELECT setseed($1)", &[&generator.seed])
        .await
        .map_err(|e| describe(&e))?;
    let stream = client
        .copy_out(generator.sql.as_str())
        .await
        .map_err(|e| describe(&e))?;
    let mut stream = std::pin::pin!(stream);
    let mut block = Vec::with_capacity(BLOCK);
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(|e| describe(&e))?;
        block.extend_from_slice(&bytes);
        if block.len() >= BLOCK {
            let full = std::mem::replace(&mut block, Vec::with_capacity(BLOCK));
            if !push(queues, wake, slot, index, Piece::Data(full)) {
                return Ok(false);
            }
        }
    }
    Ok(push(queues, wake, slot, index, Piece::Data(block)))
}

fn describe_generator_error(e: &tokio_postgres::Error, generator: &Generator) -> anyhow::Error {
    if crate::interrupt::is_interrupted() {
        return anyhow::Error::new(Interrupted);
    }
    let mut message = super::describe_mapped(e, &generator.step_sql, &generator.map);
    if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
        message.push_str(
            "\n  note: parallel steps run on connections of their own, which do not see the loading session's temporary tables",
        );
    }
    super::with_disk_full_hint(e, anyhow::anyhow!("{}: {message}", generator.what))
}

/// Queue a piece for the writer; waits while the budget is spent, unless this is the
/// chunk being written. `false` when the writer asked everyone to stop.
fn push(queues: &Mutex<Queues>, wake: &Condvar, slot: usize, chunk: usize, piece: Piece) -> bool {
    let Ok(mut q) = queues.lock() else {
        return false;
    };
    let len = match &piece {
        Piece::Data(d) => d.len(),
        Piece::End => 0,
    };
    while !q.stop && len > 0 && chunk != q.current && q.buffered > BUFFER_BUDGET {
        q = match wake.wait_timeout(q, Duration::from_millis(100)) {
            Ok((q, _)) => q,
            Err(_) => return false,
        };
    }
    if q.stop {
        return false;
    }
    q.buffered += len;
    if let Some(queue) = q.queues.get_mut(slot) {
        queue.push_back(piece);
    }
    wake.notify_all();
    true
}

fn pop(queues: &Mutex<Queues>, wake: &Condvar, slot: usize) -> Result<Piece> {
    let mut q = queues
        .lock()
        .map_err(|_| anyhow::anyhow!("a generator panicked"))?;
    loop {
        if let Some(error) = q.failed.take() {
            return Err(error);
        }
        if let Some(piece) = q.queues.get_mut(slot).and_then(VecDeque::pop_front) {
            if let Piece::Data(d) = &piece {
                q.buffered = q.buffered.saturating_sub(d.len());
            }
            wake.notify_all();
            return Ok(piece);
        }
        crate::interrupt::check()?;
        q = wake
            .wait_timeout(q, Duration::from_millis(100))
            .map_err(|_| anyhow::anyhow!("a generator panicked"))?
            .0;
    }
}

fn write(
    relay: &Relay,
    session: &mut Client,
    n: usize,
    queues: &Mutex<Queues>,
    wake: &Condvar,
) -> Result<u64> {
    use std::io::Write;
    let map_err = |e: postgres::Error, what: &str| super::server_error(&e, what, None);
    session
        .batch_execute("BEGIN")
        .map_err(|e| map_err(e, "parallel step: BEGIN"))?;
    if let Some(truncate) = &relay.truncate {
        session
            .batch_execute(truncate)
            .map_err(|e| map_err(e, "parallel step: TRUNCATE"))?;
    }
    let _cancel = crate::interrupt::CancelOnInterrupt::new(session);
    let mut writer = session
        .copy_in(relay.copy_in.as_str())
        .map_err(|e| map_err(e, "parallel step: COPY FROM STDIN"))?;
    let broken = |e: std::io::Error| {
        if crate::interrupt::is_interrupted() {
            anyhow::Error::new(Interrupted)
        } else {
            anyhow::anyhow!("parallel step: writing rows into {}: {e}", relay.copy_in)
        }
    };
    writer.write_all(HEADER).map_err(broken)?;
    for index in 0..relay.generators.len() {
        let slot = index % n;
        let mut started = false;
        let mut tail: Vec<u8> = Vec::new();
        while let Piece::Data(data) = pop(queues, wake, slot)? {
            let mut data = &data[..];
            if data.is_empty() {
                continue;
            }
            if !started {
                data = strip_header(data).with_context(|| {
                    format!("{}: unexpected COPY output", relay.generators[index].what)
                })?;
                started = true;
            }
            // Hold back the last two bytes: the chunk's trailer.
            let mut joined = std::mem::take(&mut tail);
            joined.extend_from_slice(data);
            let keep = joined.len().saturating_sub(TRAILER.len());
            writer.write_all(&joined[..keep]).map_err(broken)?;
            tail = joined[keep..].to_vec();
        }
        if tail != TRAILER {
            anyhow::bail!(
                "{}: the COPY output did not end with its trailer",
                relay.generators[index].what
            );
        }
        if let Ok(mut q) = queues.lock() {
            q.current = index + 1;
        }
        wake.notify_all();
    }
    writer.write_all(TRAILER).map_err(broken)?;
    let rows = writer.finish().map_err(|e| {
        if crate::interrupt::is_interrupted() {
            anyhow::Error::new(Interrupted)
        } else {
            map_err(e, &format!("parallel step: {}", relay.copy_in))
        }
    })?;
    session
        .batch_execute("COMMIT")
        .map_err(|e| map_err(e, "parallel step: COMMIT"))?;
    Ok(rows)
}

/// The rows of one COPY binary stream: after the 11-byte signature, the flags and the
/// header extension.
fn strip_header(data: &[u8]) -> Result<&[u8]> {
    if data.len() < 19 || &data[..11] != b"PGCOPY\n\xff\r\n\0" {
        anyhow::bail!("no binary COPY header");
    }
    let mut ext = [0u8; 4];
    ext.copy_from_slice(&data[15..19]);
    let ext = usize::try_from(u32::from_be_bytes(ext)).context("header extension")?;
    let start = 19usize.checked_add(ext).context("header extension")?;
    data.get(start..).context("truncated COPY header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range_and_do_not_depend_on_connections() {
        let c = chunks("s", Some((1, 10)), 3).unwrap();
        let bounds: Vec<_> = c.iter().map(|c| c.bounds.unwrap()).collect();
        assert_eq!(bounds, vec![(1, 3), (4, 6), (7, 10)]);
        assert_eq!(chunks("s", Some((1, 2)), 16).unwrap().len(), 2);
        assert_eq!(chunks("s", Some((5, 4)), 16).unwrap().len(), 1);
        let extreme = chunks("s", Some((i64::MIN, i64::MAX)), 7).unwrap();
        assert_eq!(extreme.first().unwrap().bounds.unwrap().0, i64::MIN);
        assert_eq!(extreme.last().unwrap().bounds.unwrap().1, i64::MAX);
        // Seeds depend on the step and the bounds only, and are valid setseed() values.
        let again = chunks("s", Some((1, 10)), 3).unwrap();
        assert_eq!(c[1].seed, again[1].seed);
        assert_ne!(c[0].seed, c[1].seed);
        assert_ne!(c[0].seed, chunks("t", Some((1, 10)), 3).unwrap()[0].seed);
        assert!(c.iter().all(|c| (-1.0..1.0).contains(&c.seed)));
    }

    #[test]
    fn an_insert_select_is_taken_apart() {
        let sql = "SET work_mem = '64MB';\n-- rows\nINSERT INTO dms.reference (id, \"Odd\")\nOVERRIDING SYSTEM VALUE\nSELECT g, g * 2 FROM generate_series(1, 9) g ORDER BY g;\nRESET work_mem;";
        let p = parse_insert(sql).unwrap();
        assert_eq!(p.settings, vec!["SET work_mem = '64MB'".to_string()]);
        assert_eq!(p.table, "dms.reference");
        assert_eq!(p.columns, Some(vec!["id".into(), "\"Odd\"".into()]));
        assert_eq!(
            p.source,
            "SELECT g, g * 2 FROM generate_series(1, 9) g ORDER BY g"
        );
        let at: String = sql.chars().skip(p.source_at).take(6).collect();
        assert_eq!(at, "SELECT");
        assert_eq!(fold_ident("\"Odd\""), "Odd");
        assert_eq!(fold_ident("ID"), "id");

        let with = parse_insert("WITH x AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM x").unwrap();
        assert_eq!(with.with.as_deref(), Some("WITH x AS (SELECT 1 AS a)"));
        assert_eq!(with.columns, None);
        assert_eq!(with.source, "SELECT a FROM x");

        for bad in [
            "INSERT INTO t SELECT 1 ON CONFLICT DO NOTHING",
            "INSERT INTO t SELECT 1 RETURNING *",
            "INSERT INTO t OVERRIDING USER VALUE SELECT 1",
            "INSERT INTO t DEFAULT VALUES",
            "UPDATE t SET a = 1",
            "INSERT INTO t SELECT 1; INSERT INTO t SELECT 2",
        ] {
            assert!(parse_insert(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generator_positions_map_back_to_the_step() {
        let sql = "INSERT INTO t (a)\nSELECT 1/0";
        let p = parse_insert(sql).unwrap();
        let (generated, map) = generator_sql(&p, &["integer".into()]);
        let in_generated = generated.find("1/0").unwrap() + 1;
        let in_step = sql.find("1/0").unwrap() + 1;
        assert_eq!(map.to_step(in_generated), Some(in_step));
        assert!(generated.starts_with("COPY (SELECT pgx_q.c0::integer FROM (\n"));
    }

    #[test]
    fn binary_copy_headers_are_stripped() {
        let mut data = HEADER.to_vec();
        data.extend_from_slice(&[0, 1, 0xff, 0xff]);
        assert_eq!(strip_header(&data).unwrap(), &[0, 1, 0xff, 0xff]);
        assert!(strip_header(b"PGCOPY").is_err());
    }
}
