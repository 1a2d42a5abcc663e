//! `pgx promote EXPERIMENT VARIANT`: write the variant as the next migration; exit 1
//! when `pgx lint` finds hazards in it.

use anyhow::Result;

use crate::cli::PromoteArgs;
use crate::promote::write::{self, Request};
use crate::target::TargetOptions;

pub fn run(options: &TargetOptions, args: &PromoteArgs) -> Result<u8> {
    write::run(
        options,
        &Request {
            experiment: args.experiment.clone(),
            variant: args.variant.clone(),
            dir: args.dir.clone(),
            report: args.report.clone(),
            dry_run: args.dry_run,
            lock_timeout: args.lock_timeout.clone(),
        },
    )
}
