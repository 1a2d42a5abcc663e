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
    split_counting(script, &mut 0)
}

/// [`split`], adding to `work` the bytes its passes read (for the linearity test).
fn split_counting(script: &str, work: &mut usize) -> Vec<Statement> {
    let bytes = script.as_bytes();
    *work += bytes.len();
    let lines = LineIndex::new(script);
    *work += bytes.len();
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
                push(script, &lines, (start, sql_end), copy, &mut out, work);
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
    push(script, &lines, (start, bytes.len()), None, &mut out, work);
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
    lines: &LineIndex,
    (start, end): (usize, usize),
    copy_data: Option<String>,
    out: &mut Vec<Statement>,
    work: &mut usize,
) {
    let piece = &script[start..end];
    *work += 2 * piece.len();
    if !has_code(piece) {
        return;
    }
    let lead = piece.len() - piece.trim_start().len();
    let offset = start + lead;
    out.push(Statement {
        sql: piece.trim().to_string(),
        offset,
        line: lines.line_of(offset),
        copy_data,
    });
}

/// Where the lines of a text start, found in one pass: the line of any byte offset is then
/// a binary search, so numbering every statement of a 50 MB migration stays linear.
pub struct LineIndex {
    /// Byte offset of the first character of every line after the first.
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let starts = text
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        LineIndex { starts }
    }

    /// 1-based line of the character at byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset) + 1
    }

    /// Byte offset where the line of `offset` starts.
    pub fn line_start(&self, offset: usize) -> usize {
        match self.line_of(offset) {
            1 => 0,
            line => self.starts[line - 2],
        }
    }
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

    /// A data migration of about `bytes` bytes: one INSERT a line.
    fn data_migration(bytes: usize) -> String {
        let mut sql = String::new();
        let mut n = 0;
        while sql.len() < bytes {
            n += 1;
            sql.push_str(&format!("INSERT INTO t VALUES ({n}, 'row; {n}');\n"));
        }
        sql
    }

    #[test]
    fn splitting_is_linear_in_the_size_of_the_script() {
        // Counted, not timed: the bytes the splitter's passes read. A quadratic splitter
        // (each statement's line counted from the start of the script) reads about
        // n²/2 bytes for n statements.
        let work_of = |sql: &str| {
            let mut work = 0;
            let statements = split_counting(sql, &mut work);
            (statements, work)
        };
        let small = data_migration(256 << 10);
        let large = data_migration(4 << 20);
        let (small_statements, small_work) = work_of(&small);
        let (large_statements, large_work) = work_of(&large);
        assert!(large_statements.len() > 15 * small_statements.len());
        for (sql, work) in [(&small, small_work), (&large, large_work)] {
            assert!(
                work <= 4 * sql.len(),
                "{work} bytes read to split {} bytes",
                sql.len()
            );
        }
        let last = large_statements.last().map(|s| s.line);
        assert_eq!(last, Some(large.lines().count()), "lines are still right");
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

    #[test]
    fn line_index_numbers_lines_and_finds_their_starts() {
        let text = "a\nbc\n\nd";
        let lines = LineIndex::new(text);
        let got: Vec<(usize, usize)> = (0..text.len())
            .map(|i| (lines.line_of(i), lines.line_start(i)))
            .collect();
        assert_eq!(
            got,
            [(1, 0), (1, 0), (2, 2), (2, 2), (2, 2), (3, 5), (4, 6)]
        );
        assert_eq!(LineIndex::new("").line_of(0), 1);
    }
}
