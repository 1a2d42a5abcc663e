//! What each command does, in terms of the library's modules. Returns the exit code.

use anyhow::Result;

use crate::cli::{ApplyArgs, Cli, ClusterAction, Command, DirArg, LintArgs};
use crate::cluster::{self, State};
use crate::migrate;
use crate::target::{Target, TargetOptions, embedded_cluster};

pub fn run(cli: Cli) -> Result<u8> {
    let options = TargetOptions {
        database_url: cli.database_url.clone(),
        data_dir: cli.data_dir.clone(),
    };
    match cli.command {
        Command::Apply(args) => apply(&options, &args),
        Command::Status(args) => status(&options, &args),
        Command::Cluster { action } => cluster_command(&options, action),
        Command::Experiment(args) => crate::experiment::run_command(&options, &args),
        Command::Lint(args) => lint(&args),
        Command::Rehearse(args) => crate::rehearse::run_command(&options, &args),
        Command::Report { json } => render_report(&json),
    }
}

fn apply(options: &TargetOptions, args: &ApplyArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.dir)?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    lint_pending(&mut client, &files, args)?;
    let outcome = migrate::apply(
        &mut client,
        &files,
        &migrate::ApplyOptions {
            target: args.target,
            dry_run: args.dry_run,
            verbose: true,
        },
    )?;
    let verb = if args.dry_run {
        "would apply"
    } else {
        "applied"
    };
    if args.dry_run {
        for (label, _) in &outcome.applied {
            println!("would apply {label}");
        }
    }
    println!(
        "{verb} {} migration(s) to {}; {} already applied",
        outcome.applied.len(),
        target.describe(),
        outcome.already_applied
    );
    Ok(0)
}

/// Lint what `apply` is about to run: warnings, or with --strict a refusal, before
/// anything changes. Applied migrations are not linted again.
fn lint_pending(
    client: &mut postgres::Client,
    files: &[migrate::MigrationFile],
    args: &ApplyArgs,
) -> Result<()> {
    let rules = crate::lint::RuleSet::new(&args.lint_rules, &args.lint_exclude)?;
    let history = migrate::read_history(client)?;
    let pending: Vec<&migrate::MigrationFile> = migrate::reconcile(files, &history)
        .into_iter()
        .filter(|e| e.state == migrate::State::Pending)
        .filter_map(|e| files.iter().find(|f| f.version == e.version))
        .filter(|f| args.target.is_none_or(|t| f.version <= t))
        .collect();
    let found = crate::lint::lint_migrations(&pending, &rules);
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
fn lint(args: &LintArgs) -> Result<u8> {
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
        write_stdout(&out)?;
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
        let found = crate::lint::lint_text(path, &sql, &rules);
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
    write_stdout(&out)?;
    Ok(if findings > 0 { 1 } else { 0 })
}

/// Print; a closed pipe (`pgx lint | head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn status(options: &TargetOptions, args: &DirArg) -> Result<u8> {
    let files = migrate::load_dir(&args.dir)?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    let report = migrate::status(&mut client, &files)?;
    println!("{}", target.describe());
    println!("{}", report.render());
    Ok(if report.has_problems() { 1 } else { 0 })
}

fn cluster_command(options: &TargetOptions, action: ClusterAction) -> Result<u8> {
    let cluster = embedded_cluster(options)?;
    match action {
        ClusterAction::Start => {
            cluster.start()?;
            cluster.keep_running();
            println!("embedded PostgreSQL running; {}", psql_hint(&cluster));
        }
        ClusterAction::Stop => {
            cluster.stop()?;
            println!("embedded PostgreSQL stopped");
        }
        ClusterAction::Status => {
            let state = cluster.state()?;
            println!("data directory: {}", cluster.data_dir().display());
            println!("server: {}", cluster.bindir.display());
            match state {
                State::NotInitialized => {
                    println!("state: not initialised (pgx initialises it on first use)")
                }
                State::Stopped => println!("state: stopped"),
                State::Running => println!("state: running; {}", psql_hint(&cluster)),
            }
            return Ok(if state == State::Running { 0 } else { 3 });
        }
        ClusterAction::Destroy => {
            cluster.destroy()?;
            println!("embedded PostgreSQL removed ({})", cluster.root.display());
        }
    }
    Ok(0)
}

fn psql_hint(cluster: &cluster::Cluster) -> String {
    format!(
        "connect with: psql -h {} -p {} -U {} {}",
        cluster.socket_dir().display(),
        cluster::PORT,
        cluster::SUPERUSER,
        cluster::DEFAULT_DATABASE
    )
}

fn render_report(json: &std::path::Path) -> Result<u8> {
    let text = std::fs::read_to_string(json).map_err(|e| {
        crate::error::fail(
            format!("cannot read {}: {e}", json.display()),
            "give the .json a `pgx experiment` run wrote, e.g. reports/index-strategies.json",
        )
    })?;
    let result = crate::report::json::load(&text).map_err(|e| {
        crate::error::fail(
            format!("{} is not a pgx experiment result: {e}", json.display()),
            "give the .json a `pgx experiment` run wrote",
        )
    })?;
    let md = json.with_extension("md");
    std::fs::write(&md, crate::report::markdown::render(&result))?;
    println!("wrote {}", md.display());
    Ok(0)
}
