//! What can go wrong with migrations, as kinds callers and tests can branch on (like
//! sqlx's `MigrateError`). Each kind has a message and, through [`MigrateError::hint`],
//! the next step for the user; `main` prints both.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("migrations directory {} does not exist", dir.display())]
    NoDirectory { dir: PathBuf },

    #[error("{} is not a valid migration name; refinery would skip it silently", path.display())]
    InvalidName {
        path: PathBuf,
        /// A name pgx accepts, when one can be guessed.
        suggestion: Option<String>,
    },

    #[error("{} and {} both have version {version}", first.display(), second.display())]
    DuplicateVersion {
        first: PathBuf,
        second: PathBuf,
        version: String,
    },

    #[error("{} and {} are both the repeatable migration {name:?}", first.display(), second.display())]
    DuplicateRepeatable {
        first: PathBuf,
        second: PathBuf,
        name: String,
    },

    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },

    #[error(
        "{}:{line}: COPY ... FROM STDIN with its data inline is not supported in migrations (the server would read the data as SQL)",
        path.display()
    )]
    CopyFromStdin { path: PathBuf, line: usize },

    #[error("{} was changed after it was applied (checksum differs from the history table's)", path.display())]
    Divergent { path: PathBuf },

    #[error("{label} is applied in the database but its file is missing")]
    Missing { label: String },

    #[error("{} is not applied, but a higher version already is; V migrations run strictly in order", path.display())]
    OutOfOrder { path: PathBuf },

    #[error("{} failed and was rolled back; nothing of it was recorded:\n  {server}", path.display())]
    Failed {
        path: PathBuf,
        server: String,
        /// The role, when the server refused it a privilege (SQLSTATE 42501).
        denied_role: Option<String>,
    },

    #[error(
        "{} (no-transaction) failed at statement {statement} (line {line}); statements before it stay applied and the migration is not recorded:\n  {server}{}",
        path.display(),
        if invalid_indexes.is_empty() { String::new() } else { format!("\n  the failed build left INVALID index(es): {}", invalid_indexes.join(", ")) }
    )]
    StatementFailed {
        path: PathBuf,
        statement: usize,
        line: usize,
        server: String,
        invalid_indexes: Vec<String>,
        /// The role, when the server refused it a privilege (SQLSTATE 42501).
        denied_role: Option<String>,
    },

    #[error(
        "{} ran, but INVALID index(es) it names remain: {} (uniqueness or the index is not in force); the migration is not recorded",
        path.display(),
        indexes.join(", ")
    )]
    InvalidIndexes { path: PathBuf, indexes: Vec<String> },

    #[error("{} ran, but recording it in the history failed: {server}", path.display())]
    RecordFailed { path: PathBuf, server: String },

    #[error("{}", interrupted_message(path.as_ref(), *rolled_back))]
    Interrupted {
        path: Option<PathBuf>,
        /// True when the running migration was rolled back (it ran in a transaction).
        rolled_back: bool,
    },

    #[error("cannot baseline: the database already has {applied} migration(s) in its history")]
    BaselineNotEmpty { applied: usize },

    #[error("{text:?} is not a version (write it like 3 or 1.1)")]
    BadVersion { text: String },

    #[error("repair would change the history: {changes}")]
    NeedsConfirmation { changes: String },

    #[error("the history table is damaged: {0}")]
    History(String),

    #[error(
        "cannot {doing}: {reason}{}",
        not_run.as_ref().map(|p| format!("\n  {} was not run", p.display())).unwrap_or_default()
    )]
    HistoryTable {
        /// e.g. "create the history table refinery_schema_history in schema public".
        doing: String,
        /// The server's message (no position: the statement was pgx's, not the file's).
        reason: String,
        /// What to do, e.g. the GRANT the role lacks.
        advice: String,
        /// The migration that was about to run, when none of it ran.
        not_run: Option<PathBuf>,
    },

    #[error("{callback} (Flyway callback) failed:\n  {server}", callback = path.display())]
    CallbackFailed {
        path: PathBuf,
        server: String,
        /// The role, when the server refused it a privilege (SQLSTATE 42501).
        denied_role: Option<String>,
    },
}

fn interrupted_message(path: Option<&PathBuf>, rolled_back: bool) -> String {
    match (path, rolled_back) {
        (Some(path), true) => format!(
            "interrupted: the running statement of {} was cancelled and the migration rolled back; nothing of it was recorded",
            path.display()
        ),
        (Some(path), false) => format!(
            "interrupted during {} (no-transaction): the statement running was cancelled, the ones before it stay applied, the migration is not recorded",
            path.display()
        ),
        (None, _) => "interrupted before the next migration; nothing was left half done".into(),
    }
}

impl MigrateError {
    /// What the user should do next.
    pub fn hint(&self) -> String {
        use MigrateError::*;
        match self {
            NoDirectory { .. } => "create it with a first migration such as V1__init.sql, or point --dir at yours".into(),
            InvalidName { suggestion: Some(s), .. } => format!(
                "name it V<version>__<name>.sql (versions like 3 or 1.1; letters, digits and _ in the name) or R__<name>.sql for a repeatable migration, e.g. {s}"
            ),
            InvalidName { suggestion: None, .. } => "name it V<version>__<name>.sql (versions like 3 or 1.1; letters, digits and _ in the name) or R__<name>.sql for a repeatable migration".into(),
            DuplicateVersion { .. } => "every migration needs its own version: rename one of them".into(),
            DuplicateRepeatable { .. } => "give each repeatable migration its own name".into(),
            Unreadable { .. } => "migrations must be readable UTF-8 text files".into(),
            CopyFromStdin { .. } => "load the rows with INSERT ... VALUES, or COPY from a file the server can read, or run the data file with psql (\\copy) outside pgx".into(),
            Divergent { .. } => "restore the file as it was applied (see `git log -p` on it) and put the change in a new migration with a higher version; if the edit was intentional and harmless, `pgx repair --yes` records the new checksum".into(),
            Missing { .. } => "restore the migration file, or point --dir at the directory that has it; `pgx repair --yes` forgets it if it was deleted on purpose".into(),
            OutOfOrder { .. } => "give it a version above the highest applied one, or prefix it with U to allow out-of-order application".into(),
            Failed { denied_role: Some(role), .. }
            | StatementFailed { denied_role: Some(role), .. }
            | CallbackFailed { denied_role: Some(role), .. } => privilege_hint(role),
            Failed { .. } => "fix the SQL and run `pgx apply` again; the migrations before it stay applied".into(),
            StatementFailed { invalid_indexes, .. } if !invalid_indexes.is_empty() => format!(
                "drop them first ({}), then fix the migration and run `pgx apply` again",
                drop_commands(invalid_indexes)
            ),
            StatementFailed { .. } => "fix the statement, make the earlier ones re-runnable (IF NOT EXISTS), and run `pgx apply` again".into(),
            InvalidIndexes { indexes, .. } => format!(
                "drop them ({}), fix what made the build fail (e.g. duplicate keys for a UNIQUE index), and run `pgx apply` again",
                drop_commands(indexes)
            ),
            RecordFailed { .. } => "its statements are applied; rerun `pgx apply` once the cause is fixed (statements must be re-runnable)".into(),
            Interrupted { .. } => "run `pgx apply` again to continue".into(),
            BaselineNotEmpty { .. } => "baseline is for an existing database that pgx has never migrated; `pgx status` shows what is recorded".into(),
            BadVersion { .. } => "versions are numbers separated by dots, as in Flyway: 1 < 1.1 < 2".into(),
            NeedsConfirmation { .. } => "run `pgx repair --yes` to make these changes".into(),
            History(_) => "the history table was edited by hand: restore the row pgx or refinery wrote, or delete it and re-apply".into(),
            HistoryTable { advice, .. } => advice.clone(),
            CallbackFailed { .. } => "fix the callback's SQL; callbacks run in a transaction of their own and are not recorded".into(),
        }
    }
}

/// SQLSTATE 42501: the SQL may be right; the role lacks a privilege.
pub fn privilege_hint(role: &str) -> String {
    format!(
        "the SQL may well be right: the role {role} lacks a privilege it needs (SQLSTATE 42501). GRANT it what the message names (e.g. GRANT CREATE ON SCHEMA ... TO {role}; GRANT SELECT, INSERT ON ... TO {role}), or run `pgx apply` as a role that has it, such as the object's owner"
    )
}

impl MigrateError {
    /// A history-table error, saying which migration was about to run.
    pub fn with_migration(self, file: &super::MigrationFile) -> MigrateError {
        match self {
            MigrateError::HistoryTable {
                doing,
                reason,
                advice,
                ..
            } => MigrateError::HistoryTable {
                doing,
                reason,
                advice,
                not_run: Some(file.path.clone()),
            },
            other => other,
        }
    }
}

/// `DROP INDEX CONCURRENTLY a; DROP INDEX CONCURRENTLY b;`
pub fn drop_commands(indexes: &[String]) -> String {
    indexes
        .iter()
        .map(|i| format!("DROP INDEX CONCURRENTLY {i};"))
        .collect::<Vec<_>>()
        .join(" ")
}
