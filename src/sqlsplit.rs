//! Split a SQL script into statements the way psql does: semicolons outside quotes,
//! dollar quotes, identifiers, comments and parentheses end a statement, except inside
//! the `BEGIN ... END` body of a `CREATE [OR REPLACE] FUNCTION | PROCEDURE` (SQL-standard
//! bodies, `BEGIN ATOMIC ... END`), tracked with psql's own heuristic (psqlscan.l).
//!
//! Needed wherever statements must run one by one: no-transaction migrations
//! (`CREATE INDEX CONCURRENTLY` refuses multi-statement strings) and experiment
//! variants (each statement's build time is reported).
//!
//! `COPY ... FROM STDIN;` is followed in a psql script by its data, up to a line `\.`:
//! the data becomes [`Statement::copy_data`] instead of being read as SQL.

/// One statement of a script, with where it starts (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// Byte offset of the statement's first character in the script.
    pub offset: usize,
    /// 1-based line of that character.
    pub line: usize,
    /// For `COPY ... FROM STDIN`: the data lines that followed it (without the `\.` line).
    pub copy_data: Option<String>,
}

/// psql's state for one statement: how deep in parentheses and in `BEGIN ... END`, and
/// the first letters of the first words (to recognise `CREATE [OR REPLACE] FUNCTION`).
#[derive(Default)]
struct Tracker {
    paren_depth: usize,
    begin_depth: usize,
    words: usize,
    first: [u8; 4],
}

impl Tracker {
    fn word(&mut self, word: &[u8]) {
        let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
        if self.words < self.first.len()
            && ["create", "function", "procedure", "or", "replace"]
                .iter()
                .any(|w| is(w))
        {
            self.first[self.words] = word[0].to_ascii_lowercase();
        }
        self.words += 1;
        let f = self.first;
        let in_routine = f[0] == b'c'
            && (f[1] == b'f'
                || f[1] == b'p'
                || (f[1] == b'o' && f[2] == b'r' && (f[3] == b'f' || f[3] == b'p')));
        if in_routine && self.paren_depth == 0 {
            if is("begin") {
                self.begin_depth += 1;
            } else if is("case") {
                // CASE also ends with END; it only matters inside a BEGIN.
                if self.begin_depth >= 1 {
                    self.begin_depth += 1;
                }
            } else if is("end") {
                self.begin_depth = self.begin_depth.saturating_sub(1);
            }
        }
    }

    fn ends_statement(&self) -> bool {
        self.paren_depth == 0 && self.begin_depth == 0
    }
}

pub fn split(script: &str) -> Vec<Statement> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut state = Tracker::default();
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = find_from(bytes, i, b"\n").map_or(bytes.len(), |e| e + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'\'' => {
                let escapes =
                    i > 0 && matches!(bytes[i - 1], b'E' | b'e') && !is_ident(bytes, i - 1);
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'$' => i = skip_dollar_quote(bytes, i),
            b'(' => {
                state.paren_depth += 1;
                i += 1;
            }
            b')' => {
                state.paren_depth = state.paren_depth.saturating_sub(1);
                i += 1;
            }
            b';' if state.ends_statement() => {
                let sql_end = i;
                i += 1;
                let copy = is_copy_from_stdin(&script[start..sql_end]).then(|| {
                    // The data starts on the line after the semicolon.
                    let data_start = find_from(bytes, i, b"\n").map_or(bytes.len(), |e| e + 1);
                    let (data, next) = copy_data(script, data_start);
                    i = next;
                    data
                });
                push(script, start, sql_end, copy, &mut out);
                start = i;
                state = Tracker::default();
            }
            c if is_word_start(c) && !is_ident(bytes, i) => {
                let mut j = i + 1;
                while j < bytes.len() && is_word_char(bytes[j]) {
                    j += 1;
                }
                state.word(&bytes[i..j]);
                i = j;
            }
            _ => i += 1,
        }
    }
    push(script, start, bytes.len(), None, &mut out);
    out
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// `COPY ... FROM STDIN` (any case, comments before it allowed).
pub fn is_copy_from_stdin(sql: &str) -> bool {
    let code: String = strip_comments(sql).to_ascii_lowercase();
    let words: Vec<&str> = code.split_whitespace().collect();
    words.first() == Some(&"copy")
        && words
            .windows(2)
            .any(|w| w[0] == "from" && (w[1] == "stdin" || w[1].starts_with("stdin")))
}

fn strip_comments(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' && bytes.get(i + 1) == Some(&b'-') {
            i = find_from(bytes, i, b"\n").map_or(bytes.len(), |e| e + 1);
            out.push(b' ');
        } else if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(bytes, i);
            out.push(b' ');
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The data of a COPY FROM STDIN starting at `from`, up to a line `\.` (or the end), and
/// where the script goes on after it.
fn copy_data(script: &str, from: usize) -> (String, usize) {
    let mut pos = from;
    while pos < script.len() {
        let line_end = script[pos..].find('\n').map_or(script.len(), |e| pos + e);
        if script[pos..line_end].trim_end_matches('\r') == "\\." {
            let next = (line_end + 1).min(script.len());
            return (script[from..pos].to_string(), next);
        }
        pos = line_end + 1;
    }
    (script[from.min(script.len())..].to_string(), script.len())
}

fn is_ident(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

fn push(
    script: &str,
    start: usize,
    end: usize,
    copy_data: Option<String>,
    out: &mut Vec<Statement>,
) {
    let piece = &script[start..end];
    if !has_code(piece) {
        return;
    }
    let lead = piece.len() - piece.trim_start().len();
    let offset = start + lead;
    out.push(Statement {
        sql: piece.trim().to_string(),
        offset,
        line: script[..offset].matches('\n').count() + 1,
        copy_data,
    });
}

/// True when a piece has something besides whitespace and comments.
fn has_code(piece: &str) -> bool {
    let bytes = piece.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = find_from(bytes, i, b"\n").map_or(bytes.len(), |e| e + 1)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            c if c.is_ascii_whitespace() => i += 1,
            _ => return true,
        }
    }
    false
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Block comments nest in PostgreSQL.
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Past a quoted string or identifier; a doubled quote is an escaped quote.
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8, backslash_escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$ ... $tag$`; a `$` that does not open a tag (e.g. `$1`) is skipped alone.
fn skip_dollar_quote(bytes: &[u8], i: usize) -> usize {
    if is_ident(bytes, i) {
        return i + 1;
    }
    let mut j = i + 1;
    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
        j += 1;
    }
    let tag_is_valid =
        bytes.get(j) == Some(&b'$') && bytes.get(i + 1).is_none_or(|c| !c.is_ascii_digit());
    if !tag_is_valid {
        return i + 1;
    }
    let tag = &bytes[i..=j];
    match find_from(bytes, j + 1, tag) {
        Some(end) => end + tag.len(),
        None => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(script: &str) -> Vec<String> {
        split(script).into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes() {
        assert_eq!(
            sqls("SELECT 'a;b'; SELECT \"x;y\" FROM t;\n-- c; d\nSELECT 3"),
            vec!["SELECT 'a;b'", "SELECT \"x;y\" FROM t", "-- c; d\nSELECT 3"]
        );
    }

    #[test]
    fn dollar_quotes_and_nested_comments_hide_semicolons() {
        let script = "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                      /* a /* nested; */ still; */ SELECT $1::int; DO $$ BEGIN NULL; END $$;";
        let got = sqls(script);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].ends_with("LANGUAGE sql"));
        assert!(got[1].ends_with("SELECT $1::int"));
        assert_eq!(got[2], "DO $$ BEGIN NULL; END $$");
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement_as_in_psql() {
        let script = "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1; SELECT 2; END;\n\
                      CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC \
                      SELECT CASE WHEN true THEN 1 ELSE 2 END; INSERT INTO t VALUES (1); END;\n\
                      BEGIN; SELECT 3; END;";
        let got = sqls(script);
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(
            got[0].starts_with("CREATE FUNCTION") && got[0].ends_with("END"),
            "{got:?}"
        );
        assert!(got[1].starts_with("CREATE OR REPLACE PROCEDURE") && got[1].ends_with("END"));
        assert_eq!(&got[2..], ["BEGIN", "SELECT 3", "END"]);
    }

    #[test]
    fn parentheses_hide_semicolons_and_words_inside_names_do_not_count() {
        // `begin_at` and `x_end` are not BEGIN / END.
        let got = sqls(
            "CREATE FUNCTION g(begin_at int) RETURNS int RETURN begin_at; SELECT x_end FROM t;",
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(sqls("SELECT (1;2); SELECT 3").len(), 2);
    }

    #[test]
    fn copy_from_stdin_data_is_kept_with_its_statement() {
        let script = "CREATE TABLE t (a int, b text);\nCOPY t (a, b) FROM stdin;\n1\tx;y\n2\tz\n\\.\nSELECT 1;\n";
        let stmts = split(script);
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert_eq!(stmts[1].sql, "COPY t (a, b) FROM stdin");
        assert_eq!(stmts[1].copy_data.as_deref(), Some("1\tx;y\n2\tz\n"));
        assert_eq!(stmts[2].sql, "SELECT 1");
        assert_eq!(stmts[2].line, 6);
        assert!(is_copy_from_stdin(
            "-- load\ncopy t FROM STDIN (FORMAT csv)"
        ));
        assert!(!is_copy_from_stdin("COPY t FROM '/tmp/x'"));
    }

    #[test]
    fn escape_strings_and_doubled_quotes() {
        assert_eq!(sqls(r"SELECT E'it\'s;'; SELECT 'it''s;'").len(), 2);
    }

    #[test]
    fn comment_only_pieces_are_dropped_and_lines_are_reported() {
        let stmts = split("-- pgx:no-transaction\n\nCREATE TABLE a();\n-- trailing\n");
        assert_eq!(stmts.len(), 1);
        assert_eq!(stmts[0].line, 1, "leading comment belongs to the statement");
        let stmts = split("SELECT 1;\n\nSELECT 2;");
        assert_eq!(stmts[1].line, 3);
        assert_eq!(&"SELECT 1;\n\nSELECT 2;"[stmts[1].offset..], "SELECT 2;");
    }
}
