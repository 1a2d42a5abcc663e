//! `pgx baseline VERSION`: start the history of a database that already has the schema.

use anyhow::Result;

use crate::cli::BaselineArgs;
use crate::migrate::{self, Version};
use crate::say;
use crate::target::{Target, TargetOptions};

pub fn run(options: &TargetOptions, args: &BaselineArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.resolve())?;
    let version = Version::parse(&args.version)?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    let covered = migrate::baseline(&mut client, &files, &version)?;
    say!(
        "baselined {} at version {version}: {covered} migration file(s) up to it count as applied and will not run",
        target.describe()
    )?;
    Ok(crate::exit::OK)
}
