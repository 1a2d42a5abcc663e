//! `reports/<experiment>.json`: every raw sample, the schedule and the analysis, for
//! machines (and for `pgx report`, which renders the Markdown again from it).

use std::path::Path;

use anyhow::{Result, bail};

use crate::experiment::result::{ExperimentResult, SCHEMA_VERSION};

/// The oldest layout this pgx reads: version 3 only added to version 2.
pub const OLDEST_READ: u32 = 2;

pub fn render(result: &ExperimentResult) -> Result<String> {
    Ok(serde_json::to_string_pretty(result)? + "\n")
}

/// Read a report file for a command: an unreadable file or one that is not a pgx
/// experiment result is an error that names the file, with `hint` (what to give instead).
pub fn read_file(path: &Path, hint: &str) -> Result<ExperimentResult> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::error::fail(format!("cannot read {}: {e}", path.display()), hint))?;
    parse(&text).map_err(|e| {
        crate::error::fail(
            format!("{} is not a pgx experiment result: {e}", path.display()),
            hint,
        )
    })
}

/// Read a JSON report back; a report of a layout this pgx does not read is refused with
/// its version.
pub fn parse(text: &str) -> Result<ExperimentResult> {
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
    let result: ExperimentResult = serde_json::from_value(value)?;
    check_samples(&result)?;
    Ok(result)
}

/// The longest time a sample may claim: about 11.6 days. An EXPLAIN that ran longer is
/// not a measurement pgx made; 1e308 ms is a corrupt or hand-edited file.
pub const MAX_SAMPLE_MS: f64 = 1e9;

/// Refuse samples no measurement gives: an execution time that is not above 0, a planning
/// time below 0 (a cached plan's can be 0), anything not finite or above [`MAX_SAMPLE_MS`].
/// Statistics and percentages computed from them would be meaningless (a 300-digit change).
fn check_samples(result: &ExperimentResult) -> Result<()> {
    for (i, cell) in result.cells.iter().enumerate() {
        for (j, sample) in cell.samples.iter().enumerate() {
            let checks = [
                (
                    "execution_ms",
                    sample.execution_ms,
                    sample.execution_ms > 0.0,
                ),
                ("planning_ms", sample.planning_ms, sample.planning_ms >= 0.0),
            ];
            for (field, value, sign_ok) in checks {
                if !(sign_ok && value.is_finite() && value <= MAX_SAMPLE_MS) {
                    bail!(
                        "cells[{i}] ({} · {} · {} · {}) samples[{j}].{field} is {value}, which no measurement gives (a time must be {} and at most {MAX_SAMPLE_MS:e} ms); the file is damaged or was edited",
                        cell.query,
                        cell.form,
                        cell.params,
                        cell.variant,
                        if field == "execution_ms" {
                            "above 0"
                        } else {
                            "0 or more"
                        },
                    );
                }
            }
        }
    }
    Ok(())
}
