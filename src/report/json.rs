//! `reports/<experiment>.json`: every raw sample and plan summary, for machines.

use anyhow::Result;

use crate::experiment::result::ExperimentResult;

pub fn render(result: &ExperimentResult) -> Result<String> {
    Ok(serde_json::to_string_pretty(result)? + "\n")
}

/// Read a JSON report back (for comparisons with a later run).
pub fn load(text: &str) -> Result<ExperimentResult> {
    Ok(serde_json::from_str(text)?)
}
