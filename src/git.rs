//! Reading a git repository at a revision without touching its work tree: what
//! `pgx experiment --against REV` compares the pull request with. Only `git` itself is
//! run (plumbing commands, `-C` the repository's root), so a checkout in progress, a
//! dirty tree or a detached HEAD are all fine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::error::fail;

/// A repository, found from a directory inside it.
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
}

impl Repo {
    /// The repository `dir` is in.
    pub fn discover(dir: &Path) -> Result<Repo> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "--show-toplevel"])
            .output()
            .map_err(|e| {
                fail(
                    format!("cannot run git: {e}"),
                    "--against reads the revision with git: install git, or compare two reports with `pgx compare`",
                )
            })?;
        if !out.status.success() {
            return Err(fail(
                format!(
                    "{} is not in a git repository: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "--against compares with a git revision of the project: run it inside the project's clone",
            ));
        }
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Repo {
            root: PathBuf::from(root),
        })
    }

    /// Run git in the repository; its stdout, or its stderr as the error.
    fn git(&self, args: &[&str]) -> std::result::Result<Vec<u8>, String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The commit a revision names (`origin/main`, `HEAD~1`, a hash).
    pub fn commit(&self, revision: &str) -> Result<String> {
        if revision.starts_with('-') {
            return Err(fail(
                format!("--against {revision:?} is not a revision"),
                "give a branch, a tag or a commit, e.g. --against origin/main",
            ));
        }
        let spec = format!("{revision}^{{commit}}");
        match self.git(&["rev-parse", "--verify", "--quiet", &spec]) {
            Ok(out) => Ok(String::from_utf8_lossy(&out).trim().to_string()),
            Err(_) => Err(fail(
                format!(
                    "--against {revision:?}: no such revision in {}",
                    self.root.display()
                ),
                "give a branch, a tag or a commit that exists (in CI, fetch the base branch first: \
                 actions/checkout with fetch-depth: 0)",
            )),
        }
    }

    /// `path` relative to the repository's root, `/`-separated, as git names it.
    pub fn relative(&self, path: &Path) -> Result<String> {
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let rel = full.strip_prefix(&root).map_err(|_| {
            fail(
                format!(
                    "{} is outside the repository at {}",
                    path.display(),
                    root.display()
                ),
                "--against reads the migrations and the experiment file from the project's own repository",
            )
        })?;
        Ok(rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// Files under `dir` (relative to the root) at `commit`, relative to the root.
    pub fn files_under(&self, commit: &str, dir: &str) -> Result<Vec<String>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let out = self
            .git(&["ls-tree", "-r", "-z", "--name-only", commit, "--", &prefix])
            .map_err(|e| fail(format!("git ls-tree {commit}: {e}"), "check the revision"))?;
        Ok(out
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect())
    }

    /// The content of `path` (relative to the root) at `commit`; None when it has none.
    pub fn show(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>> {
        let object = format!("{commit}:{path}");
        if self.git(&["cat-file", "-e", &object]).is_err() {
            return Ok(None);
        }
        self.git(&["cat-file", "blob", &object])
            .map(Some)
            .map_err(|e| fail(format!("git cat-file {object}: {e}"), "check the revision"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn a_revision_is_read_without_its_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        std::fs::create_dir_all(root.join("migrations")).unwrap();
        std::fs::write(root.join("migrations/V1__a.sql"), "SELECT 1;").unwrap();
        git(root, &["add", "."]);
        git(root, &["commit", "-q", "-m", "one"]);
        std::fs::write(root.join("migrations/V1__a.sql"), "SELECT 2;").unwrap();
        std::fs::write(root.join("migrations/V2__b.sql"), "SELECT 3;").unwrap();
        let repo = Repo::discover(&root.join("migrations")).unwrap();
        let head = repo.commit("HEAD").unwrap();
        assert_eq!(head.len(), 40);
        let rel = repo.relative(&root.join("migrations")).unwrap();
        assert_eq!(rel, "migrations");
        assert_eq!(
            repo.files_under(&head, &rel).unwrap(),
            vec!["migrations/V1__a.sql"]
        );
        assert_eq!(
            repo.show(&head, "migrations/V1__a.sql").unwrap().unwrap(),
            b"SELECT 1;"
        );
        assert_eq!(repo.show(&head, "migrations/V2__b.sql").unwrap(), None);
        let err = repo.commit("no-such-branch").unwrap_err().to_string();
        assert!(err.contains("no such revision"), "{err}");
        assert!(repo.commit("--output=x").is_err());
        let elsewhere = tempfile::tempdir().unwrap();
        let err = Repo::discover(elsewhere.path()).unwrap_err().to_string();
        assert!(err.contains("not in a git repository"), "{err}");
    }
}
