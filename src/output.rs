//! Everything pgx prints for the user on standard output goes through here.
//!
//! `println!` panics when stdout is a closed pipe (`pgx status | head -1`). These
//! functions return the write error instead; `main` treats a broken pipe as a normal exit,
//! as ripgrep does, so guards still run (on-demand server stopped, copies dropped).

use std::fmt::Display;
use std::io::{self, Write};

/// Print one line (a trailing newline is added).
pub fn line(text: impl Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Print text as it is (several lines, no newline added).
pub fn text(text: impl Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    write!(out, "{text}")?;
    out.flush()
}

/// True when an error chain holds a broken pipe: the reader went away, nothing failed.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `println!` for pgx's own output: `say!("applied {n}")?` returns the write error.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
