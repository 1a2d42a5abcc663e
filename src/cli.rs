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
        (the embedded cluster) and stops it again when done."
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
    /// Apply pending migrations from migrations/ (through refinery)
    Apply(ApplyArgs),
    /// List every migration (applied, pending, divergent, missing) and invalid indexes;
    /// exits 1 when something needs attention
    Status(DirArg),
    /// Manage the embedded PostgreSQL cluster
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Run an experiment from experiments/<NAME>.yaml (or a path) and write its report
    Experiment(ExperimentArgs),
    /// Render the Markdown report again from a run's JSON (no measuring)
    Report {
        /// reports/<experiment>.json; writes the .md next to it
        json: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// Directory of V<version>__<name>.sql files
    #[arg(long, default_value = "migrations")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Apply migrations up to and including this version
    #[arg(long)]
    pub target: Option<i32>,
    /// Print what would be applied; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ClusterAction {
    /// Start it and keep it running after pgx exits
    Start,
    /// Stop it
    Stop,
    /// Say whether it exists and runs, where, and how to connect with psql
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
    /// Rounds the measured runs are spread over, each visiting every cell in a random
    /// order (overrides runs.rounds; default 20)
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seed of the rounds' order, to reproduce a run (the report states the one used)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the A/A control (a second copy of the baseline that measures the run's own
    /// noise floor): faster, but changes are then judged against the 5% default only
    #[arg(long)]
    pub no_control: bool,
    /// Only these variants (comma-separated); the baseline is always included
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Directory for the Markdown and JSON reports
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Rebuild the dataset even if a cached one matches
    #[arg(long)]
    pub rebuild: bool,
    /// Only build (or find) the cached dataset, then stop: warms the cache for a later run
    #[arg(long)]
    pub dataset_only: bool,
}
