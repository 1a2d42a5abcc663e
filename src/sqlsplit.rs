//! Split a SQL script into statements the way psql does: semicolons outside quotes,
//! dollar quotes, identifiers and comments end a statement.
//!
//! Needed wherever statements must run one by one: no-transaction migrations
//! (`CREATE INDEX CONCURRENTLY` refuses multi-statement strings) and experiment
//! variants (each statement's build time is reported).

/// One statement of a script, with where it starts (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// Byte offset of the statement's first character in the script.
    pub offset: usize,
    /// 1-based line of that character.
    pub line: usize,
}

pub fn split(script: &str) -> Vec<Statement> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
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
            b';' => {
                push(script, start, i, &mut out);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(script, start, bytes.len(), &mut out);
    out
}

fn is_ident(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

fn push(script: &str, start: usize, end: usize, out: &mut Vec<Statement>) {
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
