//! The password file libpq reads: `PGPASSFILE`, else `~/.pgpass`; lines
//! `hostname:port:database:username:password`, `*` matching anything, `\:` and `\\`
//! escaped. Like libpq, a file others can read is ignored (with a warning).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The password file to read, if any: `PGPASSFILE`, else `~/.pgpass`.
pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".pgpass")))
}

/// What the connection is for, in the terms the file matches on.
pub struct Wanted<'a> {
    /// A host name, or `localhost` for a Unix socket (as libpq matches it).
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password of the first matching line, or `None` (no file, no match, unsafe mode).
pub fn lookup(path: &Path, wanted: &Wanted) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        crate::note!(
            "pgx: warning: password file {} has group or world access; permissions should be u=rw (0600) or less, so it is ignored (as libpq does)",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    find(&text, wanted)
}

fn find(text: &str, wanted: &Wanted) -> Option<String> {
    let port = wanted.port.to_string();
    let want = [wanted.host, port.as_str(), wanted.database, wanted.user];
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = fields[..4]
            .iter()
            .zip(want)
            .all(|(field, value)| field == "*" || field == value);
        if matches {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

/// Split on unescaped `:`; `\:` is a colon and `\\` a backslash.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(last) = fields.last_mut()
                {
                    last.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Wanted<'static> {
        Wanted {
            host: "db.internal",
            port: 5433,
            database: "app",
            user: "alice",
        }
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\nother:5433:app:alice:nope\n*:5433:*:alice:pa\\:ss\\\\word\n*:*:*:*:fallback\n";
        assert_eq!(find(text, &wanted()).as_deref(), Some("pa:ss\\word"));
        assert_eq!(find("*:*:*:*:x:y\n", &wanted()).as_deref(), Some("x:y"));
        assert_eq!(find("db.internal:5432:app:alice:p\n", &wanted()), None);
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(lookup(&path, &wanted()), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, &wanted()).as_deref(), Some("secret"));
    }
}
