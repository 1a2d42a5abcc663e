//! Everything pgx prints for the user on standard output goes through here.
//!
//! `println!` panics when stdout is a closed pipe (`pgx status | head -1`). These
//! functions return the write error instead; `main` treats a broken pipe as a normal exit,
//! as ripgrep does, so guards still run (on-demand server stopped, copies dropped).

use std::fmt::Display;
use std::io::{self, Write};

/// Writing to stdout failed. Its own type, so a broken pipe to the *terminal's reader* is
/// never confused with a broken connection to the server (also an io error).
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0}")]
pub struct StdoutError(#[from] pub io::Error);

/// Print one line (a trailing newline is added).
pub fn line(text: impl Display) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Print text as it is (several lines, no newline added).
pub fn text(text: impl Display) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    write!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// [`text`] for output followed by an exit code that matters (lint's findings, compare's
/// gate): a closed pipe (`pgx lint | head`) is not an error, and the command goes on to
/// its verdict.
pub fn text_ignoring_closed_pipe(text: impl Display) -> Result<(), StdoutError> {
    match self::text(text) {
        Err(e) if e.0.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// True when stdout's reader went away (`| head`): nothing failed, pgx just stops.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<StdoutError>()
            .is_some_and(|e| e.0.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `println!` for pgx's own output: `say!("applied {n}")?` returns the write error.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// One line for the user on standard error: progress notes, warnings, what a command did
/// beside its output. A failed write to stderr is ignored (there is nowhere left to say
/// it), as `eprintln!` would panic instead.
pub fn note_line(text: impl Display) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// `eprintln!` for pgx's own messages: `note!("pgx: {n} lint warning(s)")`. Every message
/// on stderr goes through here (errors at exit through `app::finish`, which uses it too).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::note_line(format_args!($($arg)*))
    };
}
