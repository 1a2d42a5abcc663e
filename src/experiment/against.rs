//! `pgx experiment NAME --against REV`: a pull request measured against the revision it
//! would merge into, in one interleaved run on one machine, so its timing verdicts hold.
//!
//! The experiment file is turned into an A/B experiment:
//!
//! - the **base** is built from the migrations as they are at `REV` (read with git, not
//!   from a checkout) and from the experiment file's dataset at `REV` when the file
//!   exists there (else the working tree's);
//! - the **baseline** variant (named after the revision) is that base as it is;
//! - the **candidate** variant (named after the revision range) applies the migrations
//!   the working tree has and `REV` lacks, in version order, through the variant build
//!   path (statements that cannot run in a transaction block — `CREATE INDEX
//!   CONCURRENTLY`, `VACUUM` — run on their own);
//! - a query whose SQL the pull request changed becomes two **forms**, the one at `REV`
//!   first (the reference) and the working tree's second, so the candidate's new form is
//!   compared with the baseline's old one — what merging changes.
//!
//! The A/A control is measured in the same rounds, so a pull request that changes
//! nothing gets no timing verdict. A migration the revision has whose content the
//! working tree changed is refused, as `pgx apply` refuses an edited applied migration.

use std::path::{Path, PathBuf};

use anyhow::Result;
use indexmap::IndexMap;

use super::spec::{self, FormSpec, QuerySql, Spec, VariantSpec};
use crate::error::fail;
use crate::git::Repo;
use crate::migrate::{self, Kind};

/// The experiment to run, and what it was made of.
pub struct Against {
    pub spec: Spec,
    /// The revision as typed, and the commit it names.
    pub revision: String,
    pub commit: String,
    pub baseline: String,
    pub candidate: String,
    /// The working tree's migrations the revision lacks, in the order they are applied.
    pub pending: Vec<String>,
    /// Queries whose SQL the pull request changed.
    pub changed_queries: Vec<String>,
    /// The revision's migrations, written out for the base's build; removed on drop.
    _migrations: tempfile::TempDir,
}

/// A name the experiment file format accepts (a-z, 0-9, - and _).
pub fn variant_name(revision: &str) -> String {
    let mut name: String = revision
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "base".to_string()
    } else {
        name
    }
}

pub fn resolve(current: &Spec, revision: &str) -> Result<Against> {
    let root = crate::project_root();
    let repo = Repo::discover(&root)?;
    let commit = repo.commit(revision)?;
    let short = &commit[..commit.len().min(12)];

    // The migrations at the revision, written out as files.
    let migrations_dir = root.join(&current.schema.migrations);
    let rel_dir = repo.relative(&migrations_dir)?;
    let written = tempfile::Builder::new()
        .prefix("pgx-against-")
        .tempdir()
        .map_err(|e| {
            fail(
                format!("cannot create a temporary directory: {e}"),
                "set TMPDIR to a writable directory",
            )
        })?;
    for file in repo.files_under(&commit, &rel_dir)? {
        let Some(content) = repo.show(&commit, &file)? else {
            continue;
        };
        let inside = file
            .strip_prefix(&format!("{rel_dir}/"))
            .unwrap_or(&file)
            .to_string();
        let path = written.path().join(&inside);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
    }
    let at_revision = migrate::load_dir(written.path())?;
    let in_tree = if migrations_dir.is_dir() {
        migrate::load_dir(&migrations_dir)?
    } else {
        Vec::new()
    };

    // Pending: what the tree has and the revision does not (a migration is known by its
    // identity, as the history knows it); an edited versioned one is refused.
    let mut pending = Vec::new();
    for file in &in_tree {
        match at_revision
            .iter()
            .find(|old| old.identity() == file.identity())
        {
            Some(old) if old.sql == file.sql => {}
            Some(_) if file.kind == Kind::Versioned => {
                return Err(fail(
                    format!(
                        "{} differs from its version at {revision} ({short}): a migration that is \
                         applied must not change",
                        file.path.display()
                    ),
                    format!(
                        "restore it (git checkout {revision} -- {}) and put the change in a new migration",
                        rel_path(&repo, &file.path)
                    ),
                ));
            }
            // New, or a repeatable (or callback) whose content changed: re-applied, as
            // apply does.
            _ => pending.push(file),
        }
    }
    // Versioned ones in version order, then the others in name order (as apply runs them).
    pending.sort_by(|a, b| {
        (a.kind != Kind::Versioned)
            .cmp(&(b.kind != Kind::Versioned))
            .then(a.version.cmp(&b.version))
    });
    let pending_names: Vec<String> = pending
        .iter()
        .map(|f| {
            f.path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();

    // The experiment file at the revision: its dataset and its queries' old SQL.
    let rel_spec = repo.relative(&current.path)?;
    let old_spec = match repo.show(&commit, &rel_spec)? {
        None => None,
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let where_ = PathBuf::from(format!("{}@{revision}", current.path.display()));
            match spec::parse(&where_, &text) {
                Ok(mut old) => {
                    old.dir = current.dir.clone();
                    Some(old)
                }
                Err(e) => {
                    crate::note!(
                        "pgx: warning: the experiment file at {revision} does not parse ({e}); \
                         the working tree's dataset and queries are used on both sides"
                    );
                    None
                }
            }
        }
    };

    let baseline = variant_name(revision);
    let mut candidate = format!("{baseline}-to-worktree");
    if candidate.len() > 63 {
        candidate = "worktree".into();
    }
    let mut spec = current.clone();
    spec.schema.migrations = written.path().to_path_buf();
    spec.schema.up_to = None;
    if let Some(old) = &old_spec {
        spec.dataset = old.dataset.clone();
    }
    let mut sql = String::new();
    for (file, name) in pending.iter().zip(&pending_names) {
        sql.push_str(&format!("-- {name}\n"));
        sql.push_str(file.sql.trim_end());
        if !sql.trim_end().ends_with(';') {
            sql.push(';');
        }
        sql.push('\n');
    }
    let mut variants = IndexMap::new();
    variants.insert(
        baseline.clone(),
        VariantSpec {
            about: format!("the schema at {revision} ({short})"),
            sql: None,
            file: None,
            server_settings: IndexMap::new(),
        },
    );
    variants.insert(
        candidate.clone(),
        VariantSpec {
            about: if pending_names.is_empty() {
                "no migration the revision lacks".into()
            } else {
                format!("with {}", pending_names.join(", "))
            },
            sql: (!sql.is_empty()).then_some(sql),
            file: None,
            server_settings: IndexMap::new(),
        },
    );
    spec.variants = variants;
    spec.baseline = baseline.clone();
    // The gate compares schemas under the experiment's reference settings.
    spec.settings.truncate(1);
    spec.screen = false;

    let mut changed_queries = Vec::new();
    for (name, query) in spec.queries.iter_mut() {
        query.variants.clear();
        let old = old_spec
            .as_ref()
            .and_then(|old| old.queries.get(name))
            .map(|q| q.sql.clone());
        query.sql = match (&query.sql, old) {
            (QuerySql::One(new), Some(QuerySql::One(old))) if normalize(&old) != normalize(new) => {
                changed_queries.push(name.clone());
                let mut forms = IndexMap::new();
                forms.insert(baseline.clone(), FormSpec::Sql(old));
                forms.insert("worktree".to_string(), FormSpec::Sql(new.clone()));
                QuerySql::Forms(forms)
            }
            (QuerySql::Forms(forms), _) => QuerySql::Forms(
                forms
                    .iter()
                    .map(|(n, f)| {
                        let sql = match f {
                            FormSpec::Sql(s) | FormSpec::Restricted { sql: s, .. } => s.clone(),
                        };
                        (n.clone(), FormSpec::Sql(sql))
                    })
                    .collect(),
            ),
            (sql, _) => sql.clone(),
        };
    }
    Ok(Against {
        spec,
        revision: revision.to_string(),
        commit,
        baseline,
        candidate,
        pending: pending_names,
        changed_queries,
        _migrations: written,
    })
}

fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn rel_path(repo: &Repo, path: &Path) -> String {
    repo.relative(path)
        .unwrap_or_else(|_| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_become_names_the_file_format_accepts() {
        assert_eq!(variant_name("HEAD~1"), "head-1");
        assert_eq!(variant_name("origin/main"), "origin-main");
        assert_eq!(variant_name("v1.2^"), "v1-2");
        assert_eq!(variant_name("~~"), "base");
    }
}
