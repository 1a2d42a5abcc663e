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
