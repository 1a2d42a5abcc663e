//! `pgx lint`: lint migration files; exit 1 when it finds anything.

use anyhow::Result;

use crate::cli::LintArgs;

/// `pgx lint`: exit 0 when clean, 1 when something was found.
pub fn run(args: &LintArgs) -> Result<u8> {
    let rules = crate::lint::RuleSet::new(&args.rules, &args.exclude)?;
    let mut out = String::new();
    if args.list_rules {
        for (name, from, on) in rules.describe() {
            let about = crate::lint::rules::ALL
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.about.to_string())
                .or_else(|| {
                    crate::lint::REPLACED_RULES
                        .iter()
                        .find(|(squawk, _)| *squawk == name)
                        .map(|(_, pgx)| format!("replaced by {pgx}"))
                })
                .or_else(|| {
                    crate::lint::STYLE_RULES
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
    let paths = crate::lint::collect_paths(&args.paths)?;
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
            crate::lint::lint_text(&path_owned, &sql, &rules)
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
