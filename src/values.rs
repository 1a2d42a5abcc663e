//! Text values that experiment files and load specs share: `{{var}}` templates,
//! durations (`30s`, `500ms`), and YAML parameters as the text the server casts. Neither
//! the experiment engine nor the load driver owns them, so neither depends on the other
//! for them.

use std::time::Duration;

use anyhow::Result;

use crate::db::TextParam;
use crate::error::fail;

/// Replace `{{name}}` placeholders; an unknown name is an error naming it.
pub fn substitute(text: &str, vars: &[(String, String)], what: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        let Some((_, value)) = vars.iter().find(|(k, _)| k == name) else {
            return Err(fail(
                format!("{what}: unknown placeholder {{{{{name}}}}}"),
                format!(
                    "define it under dataset.vars; known: {}",
                    vars.iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A YAML parameter (read from the file into a generic value) as text for the server:
/// scalars as written, lists as array literals.
pub fn yaml_param(value: &serde_json::Value) -> TextParam {
    match value {
        serde_json::Value::Null => TextParam(None),
        serde_json::Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|v| match yaml_scalar(v) {
                    None => "NULL".to_string(),
                    Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                })
                .collect();
            TextParam(Some(format!("{{{}}}", inner.join(","))))
        }
        other => TextParam(yaml_scalar(other)),
    }
}

pub fn yaml_scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A duration like `30s`, `500ms`, `2min`, `1h`; `None` when it is not one (see
/// [`duration_from_text`] for the reason).
pub fn parse_duration(text: &str) -> Option<Duration> {
    duration_from_text(text).ok()
}

/// The longest duration pgx accepts anywhere: far beyond any experiment, and well inside
/// what `Duration` and PostgreSQL's millisecond settings (int4) can hold.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parse a duration, saying what is wrong with it: not a number, an unknown unit, or a
/// value too large to mean anything (never a panic, whatever the digits).
pub fn duration_from_text(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{text:?} has no unit (write 30s, 500ms, 2min or 1h)"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" | "sec" => number,
        "min" | "m" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?} (use ms, s, min or h)"
            ));
        }
    };
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is too large to be a duration"))?;
    if duration > MAX_DURATION {
        return Err(format!(
            "{text:?} is longer than the longest duration pgx accepts ({} h)",
            MAX_DURATION.as_secs() / 3600
        ));
    }
    Ok(duration)
}

/// The longest `runs.timeout`: PostgreSQL's `statement_timeout` holds milliseconds in an
/// int4 (about 24 days); a day is already far beyond any measured statement.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `runs.timeout`: a duration above zero (`statement_timeout = 0` would mean *no*
/// timeout) and at most [`MAX_TIMEOUT`].
pub fn timeout_from_text(text: &str) -> Result<Duration, String> {
    let duration = duration_from_text(text)?;
    if duration < Duration::from_millis(1) {
        return Err(format!(
            "{text:?} is no timeout at all (PostgreSQL reads statement_timeout 0 as \"never\"); give at least 1ms"
        ));
    }
    if duration > MAX_TIMEOUT {
        return Err(format!(
            "{text:?} is longer than the longest statement timeout pgx accepts (24h)"
        ));
    }
    Ok(duration)
}
