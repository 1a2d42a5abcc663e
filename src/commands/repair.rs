//! `pgx repair`: re-record checksums of edited applied files, forget deleted ones.

use anyhow::Result;

use crate::cli::RepairArgs;
use crate::migrate;
use crate::say;
use crate::target::{Target, TargetOptions};

pub fn run(options: &TargetOptions, args: &RepairArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.resolve())?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    let plan = migrate::repair(&mut client, &files, args.yes)?;
    if plan.is_empty() {
        say!("nothing to repair in {}", target.describe())?;
    } else {
        say!("repaired {}: {}", target.describe(), plan.describe())?;
    }
    Ok(crate::exit::OK)
}
