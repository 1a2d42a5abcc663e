//! Command-line definitions (clap derive) and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pgx",
    version,
    about = "Safe PostgreSQL migrations and evidence-based index experiments",
    long_about = "Safe PostgreSQL migrations and evidence-based index experiments.\n\n\
        Without DATABASE_URL or PG* variables pgx starts its own PostgreSQL \
        (the embedded cluster) and stops it again when done.\n\n\
        Defaults (migrations/, experiments/, reports/, target/pgx-cluster) are found from the \
        project root, the nearest directory upwards with migrations/ or experiments/, so pgx \
        works from any subdirectory; paths given on the command line are relative to the \
        working directory.",
    after_help = "Exit codes: 0 success; 1 `status` found something that needs attention, \
        an experiment had failed parts or failed a --fail-on gate, a rehearsed migration failed, \
        `compare` failed a --fail-on gate, `promote` wrote a migration lint finds hazards in; \
        2 error; 3 `cluster status`: the embedded cluster is not running; \
        130 interrupted (Ctrl-C or SIGTERM) after cleaning up."
)]
pub struct Cli {
    /// Server to use (postgresql://user@host:port/db or key=value). Also DATABASE_URL,
    /// then the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where the embedded cluster lives (default: target/pgx-cluster in the project).
    #[arg(long, global = true, env = "PGX_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations from migrations/ (through refinery): V files in version
    /// order, then new or changed R__ files in name order
    Apply(ApplyArgs),
    /// List every migration (applied, pending, divergent, missing, repeatable) and invalid
    /// indexes; exits 1 when something needs attention
    Status(DirArg),
    /// Mark an existing database as being at VERSION: versioned migrations up to it count
    /// as applied and never run (Flyway's baseline); refused if it has a history already
    Baseline(BaselineArgs),
    /// Re-record checksums of applied migrations edited on purpose and forget rows whose
    /// file was deleted (Flyway's repair); shows what it would change unless --yes
    Repair(RepairArgs),
    /// Manage the embedded PostgreSQL cluster
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Run an experiment from experiments/<NAME>.yaml (or a path) and write its report
    Experiment(ExperimentArgs),
    /// Lint migrations for hazards (locks that block traffic, statements that cannot run as
    /// pgx runs them); exits 1 when it finds any
    Lint(LintArgs),
    /// Apply the pending migrations to a copy of an experiment's dataset while its load
    /// runs, and report the lock waits, TPS and latency clients saw
    Rehearse(RehearseArgs),
    /// Compare two runs of one experiment (e.g. main's and a pull request's JSON reports):
    /// plans, buffers, timings, new and vanished cells; `--fail-on` gates CI
    Compare(CompareArgs),
    /// Write an experiment variant's SQL as the next migration (indexes built
    /// CONCURRENTLY), citing the experiment's evidence; refuses what cannot run safely
    Promote(PromoteArgs),
    /// Drop what pgx left behind on the server: copies of runs that died (kill -9) and
    /// half-built datasets; with --bases also the cached datasets no run is using
    Gc(GcArgs),
    /// Put the shards of one experiment (`experiment --shard K/N` on several machines)
    /// together into one report; refuses shards that did not measure the same thing
    Merge(MergeArgs),
    /// Render the Markdown report again from a run's JSON (no measuring)
    Report {
        /// reports/<experiment>.json; writes the .md next to it
        json: PathBuf,
    },
    /// Print a shell completion script: `pgx completions bash > ~/.local/share/bash-completion/completions/pgx`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also drop cached dataset bases that no running pgx uses (they are rebuilt on demand)
    #[arg(long)]
    pub bases: bool,
    /// List what pgx created and what holds it; drop nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// Directory of V<version>__<name>.sql and R__<name>.sql files (default: migrations/
    /// in the project root)
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl DirArg {
    /// The directory given, else the project's `migrations/`.
    pub fn resolve(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| crate::project_root().join("migrations"))
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Apply versioned migrations up to and including this version (3, 1.1)
    #[arg(long)]
    pub target: Option<String>,
    /// Print what would be applied; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse to apply when lint finds anything in the pending migrations (else warnings)
    #[arg(long)]
    pub strict: bool,
    /// Lint rules to turn on besides the defaults (comma-separated; see `pgx lint --list-rules`)
    #[arg(long = "lint-rule", value_delimiter = ',')]
    pub lint_rules: Vec<String>,
    /// Lint rules to turn off
    #[arg(long = "lint-exclude", value_delimiter = ',')]
    pub lint_exclude: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Migration files or directories of them
    #[arg(default_value = "migrations")]
    pub paths: Vec<PathBuf>,
    /// Rules to turn on besides the defaults (comma-separated)
    #[arg(long = "rule", value_delimiter = ',')]
    pub rules: Vec<String>,
    /// Rules to turn off (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// List every rule, whether it is on, and what it checks; lint nothing
    #[arg(long)]
    pub list_rules: bool,
}

#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// Experiment name (experiments/<NAME>.yaml) or path to a YAML file; it needs a `load:`
    pub name: String,
    /// Migrations up to this version are in the dataset; the later ones are rehearsed
    /// (default: the experiment's schema.up_to, else all but the newest migration)
    #[arg(long)]
    pub from: Option<i32>,
    /// Rehearse pending migrations up to and including this version
    #[arg(long)]
    pub target: Option<i32>,
    /// Dataset scale (default: the experiment's)
    #[arg(long)]
    pub scale: Option<f64>,
    /// Load clients (default: the largest of the experiment's load.clients)
    #[arg(long)]
    pub clients: Option<usize>,
    /// Load before the first migration starts (the baseline)
    #[arg(long, default_value = "5s")]
    pub before: String,
    /// Load after the last migration ends (the recovery)
    #[arg(long, default_value = "5s")]
    pub after: String,
    /// How often pg_locks / pg_stat_activity are sampled
    #[arg(long, default_value = "50ms")]
    pub sample_every: String,
    /// Markdown report to write (default: reports/rehearse-<experiment>.md in the project root)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// The version the database is already at (3, 1.1)
    pub version: String,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Make the changes (without it, repair only says what it would change and exits 2)
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ClusterAction {
    /// Start it and keep it running after pgx exits
    Start,
    /// Stop it
    Stop,
    /// Say whether it exists and runs, where, and how to connect with psql; exits 0 when
    /// it runs and 3 when it is stopped or not initialised (as `pg_ctl status` does)
    Status,
    /// Stop it and delete its data directory (dataset caches included)
    Destroy,
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Experiment name (experiments/<NAME>.yaml) or path to a YAML file
    pub name: String,
    /// Dataset scale; 1 is the seed's production size
    #[arg(long)]
    pub scale: Option<f64>,
    /// Measured runs per cell (overrides the file's runs.repeat)
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Warmup runs per cell, discarded (overrides runs.warmup)
    #[arg(long)]
    pub warmup: Option<usize>,
    /// The most rounds a timed cell gets, each visiting every cell still needed in a
    /// random order; comparisons stop as soon as they are decided (overrides
    /// runs.rounds; default 20)
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seed of the rounds' order, to reproduce a run (the report states the one used)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Time a cell may spend in its rounds, each fresh backend's unrecorded first run
    /// included (e.g. 30s): past it, its comparisons stop, decided or not, but not
    /// before runs.min rounds (default 3) (overrides runs.budget)
    #[arg(long)]
    pub budget: Option<String>,
    /// Only these cache states of the experiment's cache: axis (comma-separated: warm,
    /// cold, prewarmed), e.g. `--cache warm` to skip the cold cells of a long run
    #[arg(long, value_delimiter = ',')]
    pub cache: Vec<String>,
    /// Skip the A/A control (a second copy of the baseline that measures the run's own
    /// noise floor): faster, but changes are then judged against the 5% default only
    #[arg(long)]
    pub no_control: bool,
    /// Only these variants (comma-separated); the baseline is always included
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Directory for the Markdown and JSON reports (default: reports/ in the project root;
    /// a relative path is relative to the working directory)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rebuild the dataset even if a cached one matches
    #[arg(long)]
    pub rebuild: bool,
    /// Only build (or find) the cached dataset, then stop: warms the cache for a later run
    #[arg(long)]
    pub dataset_only: bool,
    /// Screen the variants with HypoPG first (hypothetical btree/BRIN/hash indexes, plain
    /// EXPLAIN): estimated plans, costs and index sizes beside the measured ones (also
    /// `screen: true` in the file). Without HypoPG on the server: a warning, and the run
    /// goes on with the same exit code
    #[arg(long)]
    pub screen: bool,
    /// Screen with HypoPG and stop: a report of estimates only, no variant built or measured
    #[arg(long, conflicts_with = "dataset_only")]
    pub screen_only: bool,
    /// Give every variant a copy of its own, also those that only add indexes (which
    /// otherwise share one copy, each measured with the others' indexes hidden; also
    /// `runs.share: false`)
    #[arg(long)]
    pub separate_copies: bool,
    /// Time cells whose plan, blocks and rows equal their reference's too (otherwise
    /// reported as not timed: they do the same work; also `runs.time_identical: true`)
    #[arg(long)]
    pub time_identical: bool,
    /// Measure the working tree against a git revision (e.g. origin/main) in one run: the
    /// base built from the revision's migrations, the migrations it lacks as a variant,
    /// queries the working tree changed as two forms; the verdicts hold on this machine
    #[arg(long, value_name = "REV", conflicts_with_all = ["only", "dataset_only", "screen_only"])]
    pub against: Option<String>,
    /// Exit 1 when this run's own verdicts show it (comma-separated): regression (a cell
    /// called slower, or failing), plan-change, buffers (more blocks than the reference)
    #[arg(long, value_delimiter = ',', value_enum)]
    pub fail_on: Vec<crate::compare::Gate>,
    /// Run the K-th of N slices of the variants (the baseline and the A/A control run in
    /// every slice), e.g. 2/4 on the second of four CI runners; `pgx merge` joins them
    #[arg(long, value_name = "K/N", conflicts_with_all = ["only", "dataset_only"])]
    pub shard: Option<crate::experiment::plan::Shard>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' JSON reports (`pgx experiment NAME --shard K/N`), one per shard
    #[arg(required = true, num_args = 2..)]
    pub shards: Vec<PathBuf>,
    /// Directory for the merged Markdown and JSON reports (default: reports/ in the
    /// project root)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier run (e.g. main's committed reports/<experiment>.json)
    pub old: PathBuf,
    /// The later run (e.g. the pull request's)
    pub new: PathBuf,
    /// Also write the comparison as Markdown (a pull request comment) to this file; `-`
    /// prints it instead of the terminal tables
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Exit 1 when any of these is found (comma-separated): regression (a cell slower
    /// beyond noise or failing now; across environments: touching more blocks),
    /// plan-change, buffers (a cell touching more blocks)
    #[arg(long, value_delimiter = ',', value_enum)]
    pub fail_on: Vec<crate::compare::Gate>,
    /// Let timings gate even when the runs come from different environments or a run
    /// is noisy (by default only plans and buffers gate then)
    #[arg(long)]
    pub gate_timings: bool,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Experiment name (experiments/<NAME>.yaml) or path to a YAML file
    pub experiment: String,
    /// The variant whose SQL becomes the migration
    pub variant: String,
    /// Migrations directory to write into (default: the experiment's schema.migrations)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The experiment's JSON report to cite (default: reports/<experiment>.json)
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the migration instead of writing it (still checked on a scratch database)
    #[arg(long)]
    pub dry_run: bool,
    /// lock_timeout the migration sets before its first statement
    #[arg(long, default_value = "5s")]
    pub lock_timeout: String,
}

impl ExperimentArgs {
    /// `--out`, else the project's `reports/`.
    pub fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| crate::project_root().join("reports"))
    }
}
