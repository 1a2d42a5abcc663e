//! `pgx status`: every migration, applied or not, and invalid indexes; exit 1 when
//! something needs attention.

use anyhow::Result;

use crate::cli::DirArg;
use crate::migrate;
use crate::say;
use crate::target::{Target, TargetOptions};

pub fn run(options: &TargetOptions, args: &DirArg) -> Result<u8> {
    let files = migrate::load_dir(&args.resolve())?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    let report = migrate::status(&mut client, &files)?;
    say!("{}", target.describe())?;
    say!("{}", report.render())?;
    Ok(if report.has_problems() {
        crate::exit::ATTENTION
    } else {
        crate::exit::OK
    })
}
