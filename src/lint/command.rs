//! The `pgx lint` command, and the lint step `pgx apply` runs first.

use anyhow::Result;

use crate::cli::{ApplyArgs, LintArgs};
use crate::migrate;

/// Lint what `apply` is about to run: warnings, or with --strict a refusal, before
/// anything changes. Applied migrations are not linted again.
pub fn check_pending(
    client: &mut postgres::Client,
    files: &[migrate::MigrationFile],
    args: &ApplyArgs,
) -> Result<()> {
    let rules = super::RuleSet::new(&args.lint_rules, &args.lint_exclude)?;
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
        super::lint_migrations(&pending.iter().collect::<Vec<_>>(), &rules)
    })?;
    if found.is_empty() {
        return Ok(());
    }
    let severity = if args.strict { "error" } else { "warning" };
    for diagnostic in &found {
        eprintln!("{}", diagnostic.render(severity));
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
    eprintln!(
        "pgx: {} lint warning(s) in the pending migrations (--strict refuses them)",
        found.len()
    );
    Ok(())
}

/// `pgx lint`: exit 0 when clean, 1 when something was found.
pub fn lint(args: &LintArgs) -> Result<u8> {
    let rules = super::RuleSet::new(&args.rules, &args.exclude)?;
    let mut out = String::new();
    if args.list_rules {
        for (name, from, on) in rules.describe() {
            let about = super::rules::ALL
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.about.to_string())
                .or_else(|| {
                    super::REPLACED_RULES
                        .iter()
                        .find(|(squawk, _)| *squawk == name)
                        .map(|(_, pgx)| format!("replaced by {pgx}"))
                })
                .or_else(|| {
                    super::STYLE_RULES
                        .contains(&name.as_str())
                        .then(|| "style, not a hazard: off unless --rule turns it on".into())
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "{:<46} {:<7} {:<4} {about}\n",
                name,
                from,
                if on { "on" } else { "off" }
            ));
        }
        crate::output::text_ignoring_closed_pipe(&out)?;
        return Ok(0);
    }
    let paths = super::collect_paths(&args.paths)?;
    let mut findings = 0;
    let mut files_with = 0;
    for path in &paths {
        let sql = std::fs::read_to_string(path).map_err(|e| {
            crate::error::fail(
                format!("cannot read {}: {e}", path.display()),
                "migrations must be readable UTF-8 text files",
            )
        })?;
        let (path_owned, rules) = (path.clone(), rules.clone());
        let found = crate::interrupt::abandon_on_interrupt("lint", move || {
            super::lint_text(&path_owned, &sql, &rules)
        })?;
        if !found.is_empty() {
            files_with += 1;
        }
        for diagnostic in &found {
            out.push_str(&diagnostic.render("warning"));
            out.push_str("\n\n");
        }
        findings += found.len();
    }
    out.push_str(&format!(
        "{findings} finding(s) in {files_with} of {} file(s)\n",
        paths.len()
    ));
    crate::output::text_ignoring_closed_pipe(&out)?;
    Ok(if findings > 0 { 1 } else { 0 })
}
