//! Reading `migrations/`: Flyway-style names checked strictly, where refinery would only
//! log a warning and silently skip a misnamed file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use regex::Regex;

use crate::error::fail;

/// First line that makes a migration run outside a transaction, statement by statement.
pub const NO_TRANSACTION_MARKER: &str = "-- pgx:no-transaction";

#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub path: PathBuf,
    /// `V` (strictly ordered) or `U` (may be applied out of order), as in refinery.
    pub prefix: char,
    pub version: i32,
    pub name: String,
    pub sql: String,
    pub no_transaction: bool,
    /// refinery's checksum of name, version and SQL: what its history table stores.
    pub checksum: u64,
}

impl MigrationFile {
    /// `V3__content`, the form refinery prints and stores.
    pub fn label(&self) -> String {
        format!("{}{}__{}", self.prefix, self.version, self.name)
    }

    pub fn to_refinery(&self) -> Result<refinery::Migration> {
        refinery::Migration::unapplied(&self.label(), &self.sql)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }
}

fn name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^([UV])(\d+)__(\w+)\.sql$").expect("static regex"))
}

/// Load every `*.sql` file below `dir`, sorted by version.
pub fn load_dir(dir: &Path) -> Result<Vec<MigrationFile>> {
    if !dir.is_dir() {
        return Err(fail(
            format!("migrations directory {} does not exist", dir.display()),
            "create it with a first migration such as V1__init.sql, or point --dir at yours",
        ));
    }
    let mut paths = Vec::new();
    collect_sql_files(dir, &mut paths)?;
    paths.sort();
    let mut files: Vec<MigrationFile> = Vec::new();
    for path in paths {
        let file = load_file(&path)?;
        if let Some(other) = files.iter().find(|f| f.version == file.version) {
            return Err(fail(
                format!(
                    "{} and {} both have version {}",
                    other.path.display(),
                    path.display(),
                    file.version
                ),
                "every migration needs its own version number: rename one of them",
            ));
        }
        files.push(file);
    }
    files.sort_by_key(|f| f.version);
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
    let Some(caps) = name_re().captures(file_name) else {
        return Err(fail(
            format!(
                "{} is not a valid migration name; refinery would skip it silently",
                path.display()
            ),
            format!(
                "name it V<version>__<name>.sql with a whole-number version and only letters, digits and _ in the name, e.g. {}",
                suggest_name(file_name)
            ),
        ));
    };
    let version: i32 = caps[2].parse().map_err(|_| {
        fail(
            format!("{}: version {} is too large", path.display(), &caps[2]),
            "versions must fit in a 32-bit integer (refinery's history table stores int4)",
        )
    })?;
    let sql = fs::read_to_string(path).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", path.display()),
            "migrations must be readable UTF-8 text files",
        )
    })?;
    let no_transaction = sql
        .lines()
        .next()
        .is_some_and(|l| l.trim() == NO_TRANSACTION_MARKER);
    let prefix = if &caps[1] == "U" { 'U' } else { 'V' };
    let mut file = MigrationFile {
        path: path.to_path_buf(),
        prefix,
        version,
        name: caps[3].to_string(),
        sql,
        no_transaction,
        checksum: 0,
    };
    file.checksum = file.to_refinery()?.checksum();
    Ok(file)
}

/// A best guess at the name the user meant, for the error message.
fn suggest_name(file_name: &str) -> String {
    let stem = file_name.trim_end_matches(".sql").trim_end_matches(".SQL");
    let fixed: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let fixed = match fixed.chars().next() {
        Some('v') | Some('u') => fixed[..1].to_uppercase() + &fixed[1..],
        Some(c) if c.is_ascii_digit() => format!("V{fixed}"),
        _ => fixed,
    };
    let fixed = if fixed.contains("__") {
        fixed
    } else {
        // V3_add_index -> V3__add_index
        let digits_end = fixed
            .char_indices()
            .skip(1)
            .find(|(_, c)| !c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(fixed.len());
        format!(
            "{}__{}",
            &fixed[..digits_end],
            fixed[digits_end..].trim_start_matches('_')
        )
    };
    format!("{fixed}.sql")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_fix_common_mistakes() {
        assert_eq!(suggest_name("V2__add-index.sql"), "V2__add_index.sql");
        assert_eq!(suggest_name("v3__x.sql"), "V3__x.sql");
        assert_eq!(suggest_name("V4_add_thing.sql"), "V4__add_thing.sql");
    }

    #[test]
    fn misnamed_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("V1__ok.sql"), "SELECT 1;").unwrap();
        fs::write(dir.path().join("V2__bad-name.sql"), "SELECT 1;").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("V2__bad-name.sql"), "{err}");
        assert!(
            crate::error::hint_of(&err)
                .unwrap()
                .contains("V2__bad_name.sql")
        );
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
        fs::write(dir.path().join("V1__b.sql"), "").unwrap();
        assert!(load_dir(dir.path()).is_err());
    }
}
