//! Small helpers shared by everything that talks to PostgreSQL: identifier quoting,
//! parameters sent as text, and connection display without secrets.

use std::error::Error as StdError;

use bytes::BytesMut;
use postgres::types::{Format, FromSql, IsNull, ToSql, Type};

/// Quote an identifier like `quote_ident()` does, always (safe for any name).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal for the few statements that cannot take bound parameters
/// (`COMMENT ON DATABASE`, `SET`): doubles single quotes, uses E'' when backslashes occur.
pub fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if body.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// A query parameter sent in text format, so the server parses it as whatever type it
/// inferred for `$n`, exactly as psql's `\bind` or libpq's `PQexecParams` would.
/// `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextParam(pub Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match &self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    postgres::types::to_sql_checked!();
}

/// A text or json column read as its text (EXPLAIN's FORMAT JSON output is type json,
/// whose binary form is the text itself).
pub struct RawText(pub String);

impl<'a> FromSql<'a> for RawText {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawText(String::from_utf8(raw.to_vec())?))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::TEXT | Type::VARCHAR)
    }
}

/// Borrow a slice of text parameters in the form the `postgres` crate takes.
pub fn as_params(params: &[TextParam]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Describe a connection config for humans, never including the password.
pub fn describe_config(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config
        .get_ports()
        .first()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "5432".into());
    format!(
        "host={} port={} user={} dbname={}",
        if hosts.is_empty() {
            "localhost".to_string()
        } else {
            hosts.join(",")
        },
        port,
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }
}
