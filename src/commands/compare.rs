//! `pgx compare OLD.json NEW.json`: print the comparison, write the Markdown, and exit 1
//! when a gate asked for with `--fail-on` fails.

use std::path::Path;

use anyhow::Result;

use crate::cli::CompareArgs;
use crate::compare;
use crate::experiment::result::ExperimentResult;

fn read(path: &Path) -> Result<ExperimentResult> {
    crate::report::json::read_file(
        path,
        "give two .json reports `pgx experiment` wrote, e.g. reports/index-strategies.json (the .md next to one is for people)",
    )
}

pub fn run(args: &CompareArgs) -> Result<u8> {
    let old = read(&args.old)?;
    let new = read(&args.new)?;
    let comparison = compare::compare(
        old,
        new,
        &args.old.display().to_string(),
        &args.new.display().to_string(),
        &compare::Options {
            gate_timings: args.gate_timings,
        },
    )?;
    let text = compare::render::terminal(&comparison);
    if let Some(path) = &args.markdown {
        let md = compare::render::markdown(&comparison);
        if path.as_os_str() == "-" {
            crate::output::text_ignoring_closed_pipe(&md)?;
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    crate::error::fail(
                        format!("cannot create {}: {e}", dir.display()),
                        "give --markdown a path in a writable directory",
                    )
                })?;
            }
            std::fs::write(path, md).map_err(|e| {
                crate::error::fail(
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
    let failed = comparison.gate(&args.fail_on);
    Ok(super::gate_outcome("compare", &failed, &args.fail_on))
}
