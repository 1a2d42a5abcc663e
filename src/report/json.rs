//! `reports/<experiment>.json`: every raw sample, the schedule and the analysis, for
//! machines (and for `pgx report`, which renders the Markdown again from it).

use anyhow::{Result, bail};

use crate::experiment::result::{ExperimentResult, SCHEMA_VERSION};

/// The oldest layout this pgx reads: version 3 only added to version 2.
pub const OLDEST_READ: u32 = 2;

pub fn render(result: &ExperimentResult) -> Result<String> {
    Ok(serde_json::to_string_pretty(result)? + "\n")
}

/// Read a JSON report back; a report of a layout this pgx does not read is refused with
/// its version.
pub fn load(text: &str) -> Result<ExperimentResult> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let version = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    if version < u64::from(OLDEST_READ) || version > u64::from(SCHEMA_VERSION) {
        bail!(
            "it has schema_version {version}, and this pgx reads {OLDEST_READ} to {SCHEMA_VERSION}: run the experiment again to get a report of this version"
        );
    }
    Ok(serde_json::from_value(value)?)
}
