//! Reading `migrations/`: Flyway-style names checked strictly, where refinery would only
//! log a warning and silently skip a misnamed file.
//!
//! - `V<version>__<name>.sql`: versioned, strictly ordered. Versions are Flyway's: whole
//!   numbers separated by dots, compared part by part (1 < 1.1 < 1.2 < 1.10 < 2).
//! - `U<version>__<name>.sql`: versioned, may be applied out of order (refinery's `U`).
//! - `R__<name>.sql`: repeatable, re-applied whenever its checksum changes, after all
//!   versioned ones, in name order (Flyway's semantics).
//! - Flyway callbacks (`beforeMigrate.sql`, `afterMigrate__notify.sql`, ...), in any
//!   subdirectory: the ones pgx knows run at their point of `pgx apply`, the others are
//!   skipped with a note.

use std::cmp::Ordering;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use regex::Regex;
use sha2::{Digest, Sha256};

use super::error::MigrateError;

/// First line that makes a migration run outside a transaction, statement by statement.
pub const NO_TRANSACTION_MARKER: &str = "-- pgx:no-transaction";

/// A Flyway version: whole-number parts separated by dots. An unversioned migration
/// (repeatable or callback) has no parts.
#[derive(Debug, Clone, Default)]
pub struct Version(Vec<u64>);

/// 1 and 1.0 are the same version (as in Flyway), so equality ignores trailing zeros.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl Eq for Version {}

impl Version {
    pub fn parse(text: &str) -> Result<Version, MigrateError> {
        let bad = || MigrateError::BadVersion {
            text: text.to_string(),
        };
        if text.is_empty() {
            return Err(bad());
        }
        let parts = text
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u64>().map_err(|_| bad())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Version(parts))
    }

    /// The version refinery can record itself (its history stores int4), if it is one.
    pub fn as_refinery(&self) -> Option<i32> {
        match self.0.as_slice() {
            [n] => i32::try_from(*n).ok(),
            _ => None,
        }
    }

    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// Parts with trailing zeros removed: Flyway treats 1 and 1.0 as the same version.
    fn significant(&self) -> &[u64] {
        let end = self.0.iter().rposition(|p| *p != 0).map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.significant().cmp(other.significant())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `file.version <= 3` (an experiment's `schema.up_to`): unversioned migrations
/// (repeatables, callbacks) belong to every prefix of the schema.
impl PartialEq<i32> for Version {
    fn eq(&self, other: &i32) -> bool {
        self.partial_cmp(other) == Some(Ordering::Equal)
    }
}

impl PartialOrd<i32> for Version {
    fn partial_cmp(&self, other: &i32) -> Option<Ordering> {
        if self.is_none() {
            return Some(Ordering::Less);
        }
        let Ok(other) = u64::try_from(*other) else {
            return Some(Ordering::Greater);
        };
        Some(self.cmp(&Version(vec![other])))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `V` or `U`.
    Versioned,
    /// `R__`: re-applied when its checksum changes.
    Repeatable,
    /// A Flyway callback: the event (`afterMigrate`) it runs at.
    Callback(String),
}

#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub path: PathBuf,
    /// `V` (strictly ordered), `U` (may be applied out of order, as in refinery), `R`
    /// (repeatable), `C` (callback).
    pub prefix: char,
    /// Empty for repeatables and callbacks.
    pub version: Version,
    pub name: String,
    pub sql: String,
    pub no_transaction: bool,
    /// refinery's checksum of name, version and SQL for versions refinery records; for
    /// the others a SHA-256 of the same, cut to 64 bits: what the history stores.
    pub checksum: u64,
    pub kind: Kind,
}

impl MigrationFile {
    /// `V3__content`, `V1.1__fix`, `R__views`, `afterMigrate__notify`: the name stored and shown.
    pub fn label(&self) -> String {
        match &self.kind {
            Kind::Versioned => format!("{}{}__{}", self.prefix, self.version, self.name),
            Kind::Repeatable => format!("R__{}", self.name),
            Kind::Callback(_) => self.name.clone(),
        }
    }

    /// Which migration this is, whatever the file is called now: a versioned one by its
    /// version (`V:1.1`, V and U sharing one sequence), a repeatable by its name
    /// (`R:views`), a callback by its name (`C:afterMigrate__notify`). The history's key.
    pub fn identity(&self) -> String {
        match &self.kind {
            Kind::Versioned => format!("V:{}", self.version),
            Kind::Repeatable => format!("R:{}", self.name),
            Kind::Callback(_) => format!("C:{}", self.name),
        }
    }

    /// Recorded by refinery (a whole-number V or U version), not by pgx's own table.
    pub fn refinery_version(&self) -> Option<i32> {
        match self.kind {
            Kind::Versioned => self.version.as_refinery(),
            _ => None,
        }
    }

    pub fn to_refinery(&self) -> Result<refinery::Migration> {
        refinery::Migration::unapplied(&self.label(), &self.sql)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    fn compute_checksum(&self) -> Result<u64> {
        if self.refinery_version().is_some() {
            return Ok(self.to_refinery()?.checksum());
        }
        let mut hasher = Sha256::new();
        hasher.update(self.label().as_bytes());
        hasher.update(b"\0");
        hasher.update(self.sql.as_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        // Below 2^63 so it also fits a signed bigint, should anyone store it as one.
        Ok(u64::from_be_bytes(bytes) >> 1)
    }
}

fn versioned_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^([UV])(\d+(?:\.\d+)*)__(\w+)\.sql$").expect("static regex"))
}

fn repeatable_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^R__(\w+)\.sql$").expect("static regex"))
}

/// Flyway's SQL callback events; `name.sql` or `name__description.sql`.
pub const FLYWAY_CALLBACKS: &[&str] = &[
    "beforeMigrate",
    "beforeRepeatables",
    "beforeEachMigrate",
    "beforeEachMigrateStatement",
    "afterEachMigrateStatement",
    "afterEachMigrateStatementError",
    "afterEachMigrate",
    "afterEachMigrateError",
    "afterMigrate",
    "afterMigrateApplied",
    "afterVersioned",
    "afterMigrateError",
    "beforeUndo",
    "beforeEachUndo",
    "afterEachUndo",
    "afterEachUndoError",
    "afterUndo",
    "afterUndoError",
    "beforeClean",
    "afterClean",
    "afterCleanError",
    "beforeInfo",
    "afterInfo",
    "afterInfoError",
    "beforeValidate",
    "afterValidate",
    "afterValidateError",
    "beforeBaseline",
    "afterBaseline",
    "afterBaselineError",
    "beforeRepair",
    "afterRepair",
    "afterRepairError",
    "createSchema",
    "beforeConnect",
    "afterConnect",
];

/// Callbacks `pgx apply` runs; the others are skipped with a note.
pub const RUN_CALLBACKS: &[&str] = &[
    "beforeMigrate",
    "beforeRepeatables",
    "afterVersioned",
    "afterMigrate",
    "afterMigrateApplied",
];

fn callback_event(file_name: &str) -> Option<&'static str> {
    let stem = file_name.strip_suffix(".sql")?;
    let event = stem.split_once("__").map_or(stem, |(e, _)| e);
    FLYWAY_CALLBACKS.iter().copied().find(|c| *c == event)
}

/// Load every `*.sql` file below `dir`: versioned ones by version, then repeatables by
/// name, then callbacks by name.
pub fn load_dir(dir: &Path) -> Result<Vec<MigrationFile>> {
    if !dir.is_dir() {
        return Err(MigrateError::NoDirectory {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    let mut paths = Vec::new();
    collect_sql_files(dir, &mut paths)?;
    paths.sort();
    let mut files: Vec<MigrationFile> = Vec::new();
    for path in paths {
        // Each file is read and split in well under a second, even at 50 MB.
        crate::interrupt::check()?;
        let file = load_file(&path)?;
        if let Some(other) = files.iter().find(|f| {
            f.kind == Kind::Versioned && file.kind == Kind::Versioned && f.version == file.version
        }) {
            return Err(MigrateError::DuplicateVersion {
                first: other.path.clone(),
                second: path,
                version: file.version.to_string(),
            }
            .into());
        }
        if let Some(other) = files.iter().find(|f| {
            f.kind == Kind::Repeatable && file.kind == Kind::Repeatable && f.name == file.name
        }) {
            return Err(MigrateError::DuplicateRepeatable {
                first: other.path.clone(),
                second: path,
                name: file.name.clone(),
            }
            .into());
        }
        files.push(file);
    }
    let rank = |f: &MigrationFile| match f.kind {
        Kind::Versioned => 0,
        Kind::Repeatable => 1,
        Kind::Callback(_) => 2,
    };
    files.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(files)
}

fn collect_sql_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_sql_files(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn load_file(path: &Path) -> Result<MigrationFile> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (kind, prefix, version, name) = if let Some(caps) = versioned_re().captures(file_name) {
        let version = Version::parse(&caps[2]).map_err(|_| MigrateError::InvalidName {
            path: path.to_path_buf(),
            suggestion: None,
        })?;
        let prefix = if &caps[1] == "U" { 'U' } else { 'V' };
        (Kind::Versioned, prefix, version, caps[3].to_string())
    } else if let Some(caps) = repeatable_re().captures(file_name) {
        (
            Kind::Repeatable,
            'R',
            Version::default(),
            caps[1].to_string(),
        )
    } else if let Some(event) = callback_event(file_name) {
        let name = file_name.trim_end_matches(".sql").to_string();
        (
            Kind::Callback(event.to_string()),
            'C',
            Version::default(),
            name,
        )
    } else {
        return Err(MigrateError::InvalidName {
            path: path.to_path_buf(),
            suggestion: suggest_name(file_name),
        }
        .into());
    };
    let sql = fs::read_to_string(path).map_err(|e| MigrateError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Some(copy) = crate::sqlsplit::split(&sql)
        .into_iter()
        .find(|s| s.copy_data.is_some() || crate::sqlsplit::is_copy_from_stdin(&s.sql))
    {
        return Err(MigrateError::CopyFromStdin {
            path: path.to_path_buf(),
            line: copy.line,
        }
        .into());
    }
    let no_transaction = sql
        .lines()
        .next()
        .is_some_and(|l| l.trim() == NO_TRANSACTION_MARKER);
    let mut file = MigrationFile {
        path: path.to_path_buf(),
        prefix,
        version,
        name,
        sql,
        no_transaction,
        checksum: 0,
        kind,
    };
    file.checksum = file.compute_checksum()?;
    Ok(file)
}

/// A name pgx accepts that is the best guess at what the user meant; `None` when no
/// accepted name can be made from it. Every suggestion is checked against the rules, so
/// the hint never names a file that would itself be rejected.
pub fn suggest_name(file_name: &str) -> Option<String> {
    let stem = file_name.trim_end_matches(".sql").trim_end_matches(".SQL");
    let fixed: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let fixed = match fixed.chars().next() {
        Some('v') | Some('u') | Some('r') => fixed[..1].to_uppercase() + &fixed[1..],
        Some(c) if c.is_ascii_digit() => format!("V{fixed}"),
        _ => fixed,
    };
    let fixed = if fixed.contains("__") {
        fixed
    } else {
        // V3_add_index -> V3__add_index; V1.2_x -> V1.2__x
        let digits_end = fixed
            .char_indices()
            .skip(1)
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map(|(i, _)| i)
            .unwrap_or(fixed.len());
        format!(
            "{}__{}",
            &fixed[..digits_end],
            fixed[digits_end..].trim_start_matches('_')
        )
    };
    // The description may not contain dots; the version may not end with one.
    let fixed = match fixed.split_once("__") {
        Some((head, tail)) => format!("{}__{}", head.trim_end_matches('.'), tail.replace('.', "_")),
        None => fixed,
    };
    let candidate = format!("{fixed}.sql");
    let accepted = versioned_re().is_match(&candidate) || repeatable_re().is_match(&candidate);
    accepted.then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn suggestions_fix_common_mistakes_and_are_accepted_names() {
        assert_eq!(
            suggest_name("V2__add-index.sql").as_deref(),
            Some("V2__add_index.sql")
        );
        assert_eq!(suggest_name("v3__x.sql").as_deref(), Some("V3__x.sql"));
        assert_eq!(
            suggest_name("V4_add_thing.sql").as_deref(),
            Some("V4__add_thing.sql")
        );
        assert_eq!(
            suggest_name("r__my-views.sql").as_deref(),
            Some("R__my_views.sql")
        );
        assert_eq!(suggest_name("V1.1_x.sql").as_deref(), Some("V1.1__x.sql"));
        for name in [
            "V2__add-index.sql",
            "weird name.sql",
            "V1..2__x.sql",
            "-.sql",
            "V__x.sql",
        ] {
            if let Some(s) = suggest_name(name) {
                assert!(
                    versioned_re().is_match(&s) || repeatable_re().is_match(&s),
                    "{name} -> {s} would be rejected"
                );
            }
        }
    }

    #[test]
    fn versions_are_ordered_as_flyway_orders_them() {
        assert!(v("1") < v("1.1"));
        assert!(v("1.1") < v("1.2"));
        assert!(v("1.2") < v("1.10"));
        assert!(v("1.10") < v("2"));
        assert_eq!(v("1"), v("1"));
        assert_eq!(v("1.0").cmp(&v("1")), Ordering::Equal);
        assert!(v("2") <= 2 && v("1.1") <= 2 && v("2.1") > 2);
        assert!(Version::default() <= 0, "repeatables are in every prefix");
        assert!(Version::parse("1..2").is_err() && Version::parse("").is_err());
        assert_eq!(v("3").as_refinery(), Some(3));
        assert_eq!(v("1.1").as_refinery(), None);
        assert_eq!(v("99999999999").as_refinery(), None);
    }

    #[test]
    fn misnamed_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("V1__ok.sql"), "SELECT 1;").unwrap();
        fs::write(dir.path().join("V2__bad-name.sql"), "SELECT 1;").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("V2__bad-name.sql"), "{err}");
        match err.downcast_ref::<MigrateError>() {
            Some(MigrateError::InvalidName { suggestion, .. }) => {
                assert_eq!(suggestion.as_deref(), Some("V2__bad_name.sql"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kinds_dotted_versions_repeatables_and_callbacks_load_in_flyway_order() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("callbacks");
        fs::create_dir(&sub).unwrap();
        for name in [
            "V2__b.sql",
            "V1.1__a1.sql",
            "V1__a.sql",
            "R__views.sql",
            "R__a_functions.sql",
        ] {
            fs::write(dir.path().join(name), "SELECT 1;").unwrap();
        }
        fs::write(sub.join("afterMigrate__grants.sql"), "SELECT 1;").unwrap();
        fs::write(sub.join("beforeClean.sql"), "SELECT 1;").unwrap();
        let files = load_dir(dir.path()).unwrap();
        let labels: Vec<String> = files.iter().map(MigrationFile::label).collect();
        assert_eq!(
            labels,
            [
                "V1__a",
                "V1.1__a1",
                "V2__b",
                "R__a_functions",
                "R__views",
                "afterMigrate__grants",
                "beforeClean"
            ]
        );
        assert_eq!(files[5].kind, Kind::Callback("afterMigrate".into()));
        assert_ne!(files[3].checksum, files[4].checksum);
    }

    #[test]
    fn checksum_is_refinerys_and_marker_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let sql = "-- pgx:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n";
        fs::write(dir.path().join("V7__idx.sql"), sql).unwrap();
        let files = load_dir(dir.path()).unwrap();
        assert!(files[0].no_transaction);
        let expected = refinery::Migration::unapplied("V7__idx", sql)
            .unwrap()
            .checksum();
        assert_eq!(files[0].checksum, expected);
    }

    #[test]
    fn duplicate_versions_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("V1__a.sql"), "").unwrap();
        fs::write(dir.path().join("V1.0__b.sql"), "").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<MigrateError>(),
            Some(MigrateError::DuplicateVersion { .. })
        ));
    }

    #[test]
    fn copy_from_stdin_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("V1__data.sql"),
            "CREATE TABLE t (a int);\nCOPY t (a) FROM stdin;\n1\n2\n\\.\n",
        )
        .unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        match err.downcast_ref::<MigrateError>() {
            Some(MigrateError::CopyFromStdin { line, .. }) => assert_eq!(*line, 2),
            other => panic!("{other:?}"),
        }
    }
}
