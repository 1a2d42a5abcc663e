//! One file per subcommand: each a thin function from its parsed arguments (`cli`) to the
//! library call and its output, returning the exit code. `app` dispatches to them; nothing
//! below imports them (a test checks it).

pub mod apply;
pub mod baseline;
pub mod cluster;
pub mod compare;
pub mod completions;
pub mod experiment;
pub mod gc;
pub mod lint;
pub mod merge;
pub mod promote;
pub mod rehearse;
pub mod repair;
pub mod report;
pub mod status;

use crate::compare::Gate;

/// `--fail-on`: say each failure (a line each) and how many, on stderr, and return the
/// exit code; OK when nothing failed.
fn gate_outcome(command: &str, failed: &[String], gates: &[Gate]) -> u8 {
    if failed.is_empty() {
        return crate::exit::OK;
    }
    for line in failed {
        crate::note!("pgx {command}: {line}");
    }
    crate::note!(
        "pgx {command}: {} gate failure(s) (--fail-on {})",
        failed.len(),
        gates.iter().map(|g| g.name()).collect::<Vec<_>>().join(",")
    );
    crate::exit::ATTENTION
}
