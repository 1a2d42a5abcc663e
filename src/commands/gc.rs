//! `pgx gc`: drop what pgx left behind on the server.

use anyhow::Result;

use crate::say;
use crate::target::{Target, TargetOptions, connect};

pub fn run(options: &TargetOptions, args: &crate::cli::GcArgs) -> Result<u8> {
    use crate::experiment::gc::{self, Kind, State};
    let target = Target::resolve(options)?;
    let mut admin = connect(&target.admin_config())?;
    let found = gc::survey(&mut admin, true)?;
    let dropped: Vec<String> = if args.dry_run {
        Vec::new()
    } else {
        gc::collect(&mut admin, args.bases)?
            .into_iter()
            .map(|f| f.name)
            .collect()
    };
    say!("{}", target.describe())?;
    if found.is_empty() {
        say!("no databases created by pgx")?;
        return Ok(0);
    }
    for f in &found {
        let kind = match f.kind {
            Kind::Copy => "copy",
            Kind::Building => "base, half-built",
            Kind::Base => "base",
            Kind::Variant => "built variant",
        };
        let state = match f.state {
            State::InUse => "in use by a running pgx",
            State::Orphan => "orphaned (its pgx is gone)",
            State::Cached => "cached, unused",
        };
        let action = if dropped.contains(&f.name) {
            "dropped"
        } else if args.dry_run {
            "(dry run)"
        } else {
            "kept"
        };
        say!(
            "{:<12} {} ({kind}, {}): {state}",
            action,
            f.name,
            crate::report::fmt_bytes(f.bytes)
        )?;
    }
    Ok(0)
}
