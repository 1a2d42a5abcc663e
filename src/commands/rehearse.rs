//! `pgx rehearse EXPERIMENT`: apply the pending migrations to a copy of its dataset while
//! its load runs; print and write what the load saw; exit 1 when a migration failed.

use anyhow::{Context, Result};

use crate::cli::RehearseArgs;
use crate::rehearse;
use crate::target::TargetOptions;

pub fn run(options: &TargetOptions, args: &RehearseArgs) -> Result<u8> {
    let request = rehearse::Request {
        name: args.name.clone(),
        from: args.from,
        target: args.target,
        scale: args.scale,
        clients: args.clients,
        before: args.before.clone(),
        after: args.after.clone(),
        sample_every: args.sample_every.clone(),
    };
    let result = rehearse::run(options, &request)?;
    // Through crate::output (a closed stdout is a normal exit); the report is written
    // even then.
    let shown = crate::say!("{}", rehearse::report::terminal(&result));
    // Like every default, reports/ is the project root's; a typed --out is the user's path.
    let out = args.out.clone().unwrap_or_else(|| {
        crate::project_root()
            .join("reports")
            .join(format!("rehearse-{}.md", result.plan.experiment))
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&out, rehearse::report::markdown(&result))
        .with_context(|| format!("cannot write {}", out.display()))?;
    shown?;
    crate::say!("wrote {}", out.display())?;
    Ok(if result.failed() {
        crate::exit::ATTENTION
    } else {
        crate::exit::OK
    })
}
