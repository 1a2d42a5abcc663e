//! The `pgx compare` command: read two JSON reports, print the comparison, write the
//! Markdown, and exit 1 when a gate asked for with `--fail-on` fails.

use std::path::Path;

use anyhow::Result;

use super::{Gate, Options};
use crate::cli::CompareArgs;
use crate::error::fail;
use crate::experiment::result::ExperimentResult;

/// Exit code when a `--fail-on` gate fails (2 is bad input, as for every command).
pub const EXIT_GATE_FAILED: u8 = crate::app::exit::ATTENTION;

pub fn load(path: &Path) -> Result<ExperimentResult> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", path.display()),
            "give two .json reports `pgx experiment` wrote, e.g. reports/index-strategies.json",
        )
    })?;
    crate::report::json::load(&text).map_err(|e| {
        fail(
            format!("{} is not a pgx experiment result: {e}", path.display()),
            "give two .json reports `pgx experiment` wrote (the .md next to one is for people)",
        )
    })
}

pub fn run(args: &CompareArgs) -> Result<u8> {
    let old = load(&args.old)?;
    let new = load(&args.new)?;
    let comparison = super::compare(
        old,
        new,
        &args.old.display().to_string(),
        &args.new.display().to_string(),
        &Options {
            gate_timings: args.gate_timings,
        },
    )?;
    let text = super::render::terminal(&comparison);
    if let Some(path) = &args.markdown {
        let md = super::render::markdown(&comparison);
        if path.as_os_str() == "-" {
            crate::output::text_ignoring_closed_pipe(&md)?;
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    fail(
                        format!("cannot create {}: {e}", dir.display()),
                        "give --markdown a path in a writable directory",
                    )
                })?;
            }
            std::fs::write(path, md).map_err(|e| {
                fail(
                    format!("cannot write {}: {e}", path.display()),
                    "give --markdown a path in a writable directory",
                )
            })?;
            crate::output::text_ignoring_closed_pipe(&text)?;
            crate::output::text_ignoring_closed_pipe(format!("wrote {}\n", path.display()))?;
        }
    } else {
        crate::output::text_ignoring_closed_pipe(&text)?;
    }
    let gates: Vec<Gate> = args.fail_on.clone();
    let failed = comparison.gate(&gates);
    if failed.is_empty() {
        return Ok(0);
    }
    for line in &failed {
        eprintln!("pgx compare: {line}");
    }
    eprintln!(
        "pgx compare: {} gate failure(s) (--fail-on {})",
        failed.len(),
        gates
            .iter()
            .map(|g| match g {
                Gate::Regression => "regression",
                Gate::PlanChange => "plan-change",
                Gate::Buffers => "buffers",
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(EXIT_GATE_FAILED)
}
