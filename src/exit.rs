//! Exit codes, as `pgx --help` and docs/reference.md list them. Ground floor: every
//! module that decides an exit code imports them from here.

pub const OK: u8 = 0;
/// The command ran and found something: `pgx status` needs attention, an experiment with
/// failed parts, a rehearsal whose migration failed, a `pgx compare` gate, lint findings.
pub const ATTENTION: u8 = 1;
pub const ERROR: u8 = 2;
/// `pgx cluster status`: the embedded cluster is not running.
pub const NOT_RUNNING: u8 = 3;
/// Ctrl-C or SIGTERM, after cleaning up.
pub const INTERRUPTED: u8 = 130;
