//! Errors that tell the user what happened and what to do next.
//!
//! Everything fallible returns `anyhow::Result`; an error that needs advice carries a
//! [`Hint`] somewhere in its chain, which `main` prints after the message.

use std::fmt;

/// A message plus the next step the user should take.
#[derive(Debug)]
pub struct Hint {
    pub message: String,
    pub hint: String,
    /// The server's SQLSTATE, when the message says in words what a server error meant
    /// (a failed connection): [`sqlstate_of`] and [`server_terminated`] still see it.
    pub sqlstate: Option<postgres::error::SqlState>,
    /// The server went away under pgx (the embedded postmaster died).
    pub server_gone: bool,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hint {}

/// Build an error with advice: `fail("no migrations in x", "create V1__init.sql")`.
pub fn fail(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hint {
        message: message.into(),
        hint: hint.into(),
        sqlstate: None,
        server_gone: false,
    })
}

/// [`fail`] for a server error said in words, keeping its SQLSTATE.
pub fn fail_with_sqlstate(
    message: impl Into<String>,
    hint: impl Into<String>,
    sqlstate: Option<postgres::error::SqlState>,
) -> anyhow::Error {
    anyhow::Error::new(Hint {
        message: message.into(),
        hint: hint.into(),
        sqlstate,
        server_gone: false,
    })
}

/// [`fail`] for a server that is gone (the embedded postmaster died under pgx).
pub fn server_gone(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hint {
        message: message.into(),
        hint: hint.into(),
        sqlstate: None,
        server_gone: true,
    })
}

/// The first hint found in an error chain, if any (a [`Hint`]); else, for a server's
/// "permission denied" (SQLSTATE 42501), advice about privileges. (A typed error of a
/// higher module, such as `MigrateError`, carries its own hint: `app::finish` asks it
/// first.)
pub fn hint_of(err: &anyhow::Error) -> Option<String> {
    err.chain()
        .find_map(|e| e.downcast_ref::<Hint>().map(|h| h.hint.clone()))
        .or_else(|| {
            (sqlstate_of(err) == Some(postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)).then(|| {
                "the role pgx connected as lacks a privilege (SQLSTATE 42501): GRANT it what the message names, or connect as a role that has it, such as the object's owner".to_string()
            })
        })
}

/// A server error said in words (psql's form, with the statement's line and column, and
/// what pgx was doing) that keeps the driver's error, so [`sqlstate_of`] and
/// [`server_terminated`] still see what it was: a session lost under a statement is the
/// server ending it, not a failed statement.
#[derive(Debug)]
pub struct Described {
    pub message: String,
    pub error: postgres::Error,
}

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Described {}

/// The driver's error `error` said as `message` (usually [`describe_pg_error`], maybe
/// with what failed in front), its type kept.
pub fn described(message: String, error: postgres::Error) -> anyhow::Error {
    anyhow::Error::new(Described { message, error })
}

/// The driver's error this link of a chain is, or says in words ([`Described`]).
fn pg_error_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a postgres::Error> {
    e.downcast_ref::<postgres::Error>()
        .or_else(|| e.downcast_ref::<Described>().map(|d| &d.error))
}

/// The driver's errors in the chain, also those said in words.
fn pg_errors(err: &anyhow::Error) -> impl Iterator<Item = &postgres::Error> {
    err.chain().filter_map(pg_error_of)
}

/// The SQLSTATE of the first server error in the chain (also one said in words).
pub fn sqlstate_of(err: &anyhow::Error) -> Option<postgres::error::SqlState> {
    err.chain().find_map(|e| {
        pg_error_of(e)
            .and_then(|pg| pg.code().cloned())
            .or_else(|| e.downcast_ref::<Hint>().and_then(|h| h.sqlstate.clone()))
    })
}

/// The SQLSTATEs of a session the server ended: by an administrator or a shutdown
/// (57P01), for a crashed sibling (57P02), refused while it recovers (57P03).
const SESSION_ENDED: [postgres::error::SqlState; 3] = [
    postgres::error::SqlState::ADMIN_SHUTDOWN,
    postgres::error::SqlState::CRASH_SHUTDOWN,
    postgres::error::SqlState::CANNOT_CONNECT_NOW,
];

/// Did the server terminate pgx's sessions, or go away? True when a backend was killed
/// (kill -9, the OOM killer) and PostgreSQL restarted every backend (SQLSTATE 57P02, then
/// 57P03 "the database system is in recovery mode" / "is starting up" while it recovers),
/// when an administrator or a shutdown terminated them (57P01), when a connection closed
/// or was reset under a query, and when the embedded postmaster died. What was measured
/// before is still worth a partial report; the run itself cannot go on.
pub fn server_terminated(err: &anyhow::Error) -> bool {
    if sqlstate_of(err).is_some_and(|c| SESSION_ENDED.contains(&c)) {
        return true;
    }
    err.chain()
        .any(|e| e.downcast_ref::<Hint>().is_some_and(|h| h.server_gone))
        || pg_errors(err).any(connection_lost)
}

/// Is the server recovering from a crash and about to accept connections again (SQLSTATE
/// 57P03, or sessions just terminated for the restart)? Worth waiting for, unlike a server
/// that is gone.
pub fn server_recovering(err: &anyhow::Error) -> bool {
    use postgres::error::SqlState;
    let gone = err
        .chain()
        .any(|e| e.downcast_ref::<Hint>().is_some_and(|h| h.server_gone));
    !gone
        && (matches!(
            sqlstate_of(err),
            Some(c) if c == SqlState::CANNOT_CONNECT_NOW || c == SqlState::CRASH_SHUTDOWN
        ) || pg_errors(err).any(connection_lost))
}

/// The server ended this session, or it is gone: the connection closed or failed under
/// it, or the server said it terminated it (57P01 by an administrator, 57P02 for a crashed
/// sibling, 57P03 while it recovers). Not the statement's failure: the run's.
pub fn session_ended(pg: &postgres::Error) -> bool {
    connection_lost(pg) || pg.code().is_some_and(|c| SESSION_ENDED.contains(c))
}

/// The driver's error for a connection that closed or failed under it: closed, or any
/// I/O error on its socket ("error communicating with the server": a reset, an early
/// EOF, a broken pipe, or another kind the OS reports when the backend is killed). A
/// connection that failed to read or write is gone, whatever the kind.
fn connection_lost(pg: &postgres::Error) -> bool {
    pg.is_closed()
        || std::error::Error::source(pg)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// True when the error is (or was caused by) Ctrl-C or SIGTERM, as [`Interrupted`].
pub fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<Interrupted>().is_some())
}

/// Raised when the user pressed Ctrl-C; callers clean up and exit quietly.
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Describe a server error the way psql does: severity, message, detail, hint and the
/// line and column of the failing position inside `sql` (when the server gave one).
pub fn describe_pg_error(err: &postgres::Error, sql: Option<&str>) -> String {
    describe_at(err, |pos| sql.map(|sql| (sql, pos)))
}

/// [`describe_pg_error`] with the server's 1-based position mapped by `locate` to the text
/// (and position in it) the user wrote: the statement itself, or the step a generated
/// statement came from.
pub fn describe_at<'a>(
    err: &postgres::Error,
    locate: impl FnOnce(usize) -> Option<(&'a str, usize)>,
) -> String {
    let Some(db) = err.as_db_error() else {
        return err.to_string();
    };
    let mut out = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(postgres::error::ErrorPosition::Original(pos)) = db.position()
        && let Some((text, at)) = locate(*pos as usize)
    {
        let (line, col) = line_col(text, at);
        let source = text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim_end();
        out.push_str(&format!("\n  at line {line}, column {col}: {source}"));
    }
    if let Some(detail) = db.detail() {
        out.push_str(&format!("\n  detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        out.push_str(&format!("\n  server hint: {hint}"));
    }
    if let Some(ctx) = db.where_() {
        out.push_str(&format!("\n  context: {ctx}"));
    }
    out
}

/// 1-based line and column of a 1-based character position (PostgreSQL counts characters).
pub fn line_col(text: &str, position: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, ch) in text.chars().enumerate() {
        if i + 1 >= position {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let sql = "SELECT 'é';\nSELEC 1;";
        // 'S' of "SELEC" is the 13th character.
        assert_eq!(line_col(sql, 13), (2, 1));
        assert_eq!(line_col(sql, 1), (1, 1));
        assert_eq!(line_col(sql, 8), (1, 8));
    }

    #[test]
    fn terminated_sessions_and_a_gone_server_are_told_from_other_errors() {
        use postgres::error::SqlState;
        let recovering = fail_with_sqlstate("x", "y", Some(SqlState::CANNOT_CONNECT_NOW))
            .context("dropping a copy");
        assert!(server_terminated(&recovering) && server_recovering(&recovering));
        let gone = server_gone("the embedded PostgreSQL at d stopped unexpectedly", "h");
        assert!(server_terminated(&gone) && !server_recovering(&gone));
        let refused = fail_with_sqlstate("x", "y", Some(SqlState::INSUFFICIENT_PRIVILEGE));
        assert!(!server_terminated(&refused) && !server_recovering(&refused));
        assert!(!server_terminated(&fail("boom", "do this")));
        assert_eq!(
            hint_of(&refused).as_deref(),
            Some("y"),
            "the error's own hint comes first"
        );
    }

    #[test]
    fn hint_is_found_through_context() {
        let err = fail("boom", "do this").context("while doing that");
        assert_eq!(hint_of(&err).as_deref(), Some("do this"));
    }
}
