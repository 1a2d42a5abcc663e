//! `pgx apply`: lint the pending migrations (warnings, or with --strict a refusal), then
//! apply them.

use anyhow::Result;

use crate::cli::ApplyArgs;
use crate::migrate::{self, Version};
use crate::say;
use crate::target::{Target, TargetOptions};

pub fn run(options: &TargetOptions, args: &ApplyArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.resolve())?;
    let target_version = args.target.as_deref().map(Version::parse).transpose()?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    check_pending(&mut client, &files, args)?;
    let outcome = migrate::apply(
        &mut client,
        &files,
        &migrate::ApplyOptions {
            target: target_version,
            dry_run: args.dry_run,
            verbose: true,
        },
    )?;
    for note in &outcome.notes {
        crate::note!("pgx: {note}");
    }
    let verb = if args.dry_run {
        "would apply"
    } else {
        "applied"
    };
    if args.dry_run {
        for (label, _) in &outcome.applied {
            say!("would apply {label}")?;
        }
    }
    say!(
        "{verb} {} migration(s) to {}; {} already applied",
        outcome.applied.len(),
        target.describe(),
        outcome.already_applied
    )?;
    Ok(crate::exit::OK)
}

/// Lint what `apply` is about to run: warnings, or with --strict a refusal, before
/// anything changes. Applied migrations are not linted again.
fn check_pending(
    client: &mut postgres::Client,
    files: &[migrate::MigrationFile],
    args: &ApplyArgs,
) -> Result<()> {
    let rules = crate::lint::RuleSet::new(&args.lint_rules, &args.lint_exclude)?;
    let history = migrate::read_history(client)?;
    let target = args
        .target
        .as_deref()
        .map(migrate::Version::parse)
        .transpose()?;
    // Pending versioned files up to the target, and new or changed repeatables.
    let pending: Vec<&migrate::MigrationFile> = migrate::reconcile(files, &history)
        .into_iter()
        .filter(|e| e.state.is_pending())
        .filter_map(|e| e.file)
        .filter_map(|pending| files.iter().find(|f| f.label() == pending.label()))
        .filter(|f| {
            f.kind == migrate::Kind::Repeatable || target.as_ref().is_none_or(|t| &f.version <= t)
        })
        .collect();
    // Linting a huge data migration takes seconds: Ctrl-C must not wait for it.
    let pending: Vec<migrate::MigrationFile> = pending.into_iter().cloned().collect();
    let found = crate::interrupt::abandon_on_interrupt("lint", move || {
        crate::lint::lint_migrations(&pending.iter().collect::<Vec<_>>(), &rules)
    })?;
    if found.is_empty() {
        return Ok(());
    }
    let severity = if args.strict { "error" } else { "warning" };
    for diagnostic in &found {
        crate::note!("{}", diagnostic.render(severity));
    }
    if args.strict {
        return Err(crate::error::fail(
            format!(
                "lint found {} hazard(s) in the pending migrations; --strict applies nothing",
                found.len()
            ),
            "fix them, silence one with `-- pgx:lint-ignore RULE` before its statement, or run without --strict",
        ));
    }
    crate::note!(
        "pgx: {} lint warning(s) in the pending migrations (--strict refuses them)",
        found.len()
    );
    Ok(())
}
