//! What each command does, in terms of the library's modules. Returns the exit code.
//! Output for the user goes through [`crate::output`]; errors are reported by [`finish`].

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{ApplyArgs, BaselineArgs, Cli, ClusterAction, Command, DirArg, RepairArgs};
use crate::cluster::{self, State};
use crate::migrate::{self, Version};
use crate::say;
use crate::target::{Target, TargetOptions, connect, embedded_cluster};

/// Exit codes, as `pgx --help` lists them.
pub mod exit {
    pub const OK: u8 = 0;
    /// `pgx status` found something that needs attention (also: an experiment with failed
    /// parts, a rehearsal whose migration failed).
    pub const ATTENTION: u8 = 1;
    pub const ERROR: u8 = 2;
    /// `pgx cluster status`: the embedded cluster is not running.
    pub const NOT_RUNNING: u8 = 3;
    /// Ctrl-C or SIGTERM, after cleaning up.
    pub const INTERRUPTED: u8 = 130;
}

pub fn run(cli: Cli) -> Result<u8> {
    let options = TargetOptions {
        database_url: cli.database_url.clone(),
        data_dir: cli.data_dir.clone(),
    };
    match cli.command {
        Command::Apply(args) => apply(&options, &args),
        Command::Status(args) => status(&options, &args),
        Command::Baseline(args) => baseline(&options, &args),
        Command::Repair(args) => repair(&options, &args),
        Command::Cluster { action } => cluster_command(&options, action),
        Command::Experiment(args) => crate::experiment::run_command(&options, &args),
        Command::Lint(args) => crate::lint::command::lint(&args),
        Command::Rehearse(args) => crate::rehearse::run_command(&options, &args),
        Command::Compare(args) => crate::compare::command::run(&args),
        Command::Promote(args) => crate::promote::command::run(&options, &args),
        Command::Gc(args) => gc(&options, &args),
        Command::Report { json } => render_report(&json),
        Command::Completions { shell } => completions(shell),
    }
}

/// Map the result of [`run`] to an exit code, printing the error (message, causes, hint)
/// to stderr. A closed stdout is a normal end, as in ripgrep.
pub fn finish(result: Result<u8>) -> u8 {
    let err = match result {
        Ok(code) => return code,
        Err(err) => err,
    };
    if crate::output::is_broken_pipe(&err) {
        return exit::OK;
    }
    let mut stderr = std::io::stderr().lock();
    if crate::error::is_interrupted(&err) {
        // A plain interrupt was announced by the handler; a migration says what it undid.
        if err
            .chain()
            .any(|e| e.downcast_ref::<migrate::MigrateError>().is_some())
        {
            let _ = writeln!(stderr, "pgx: {err}");
        }
        return exit::INTERRUPTED;
    }
    let _ = writeln!(stderr, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
    if let Some(hint) = crate::error::hint_of(&err) {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    exit::ERROR
}

fn apply(options: &TargetOptions, args: &ApplyArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.resolve())?;
    let target_version = args.target.as_deref().map(Version::parse).transpose()?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    crate::lint::command::check_pending(&mut client, &files, args)?;
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
        eprintln!("pgx: {note}");
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
    Ok(exit::OK)
}

fn status(options: &TargetOptions, args: &DirArg) -> Result<u8> {
    let files = migrate::load_dir(&args.resolve())?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    let report = migrate::status(&mut client, &files)?;
    say!("{}", target.describe())?;
    say!("{}", report.render())?;
    Ok(if report.has_problems() {
        exit::ATTENTION
    } else {
        exit::OK
    })
}

fn baseline(options: &TargetOptions, args: &BaselineArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.resolve())?;
    let version = Version::parse(&args.version)?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    let covered = migrate::baseline(&mut client, &files, &version)?;
    say!(
        "baselined {} at version {version}: {covered} migration file(s) up to it count as applied and will not run",
        target.describe()
    )?;
    Ok(exit::OK)
}

fn repair(options: &TargetOptions, args: &RepairArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.resolve())?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    let plan = migrate::repair(&mut client, &files, args.yes)?;
    if plan.is_empty() {
        say!("nothing to repair in {}", target.describe())?;
    } else {
        say!("repaired {}: {}", target.describe(), plan.describe())?;
    }
    Ok(exit::OK)
}

fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pgx", &mut script);
    crate::output::text(String::from_utf8_lossy(&script))?;
    Ok(exit::OK)
}

fn cluster_command(options: &TargetOptions, action: ClusterAction) -> Result<u8> {
    let cluster = embedded_cluster(options)?;
    match action {
        ClusterAction::Start => {
            cluster.start()?;
            cluster.keep_running();
            // The psql command names the database apply and status use: make it exist.
            crate::target::ensure_default_database(&cluster)?;
            say!(
                "embedded PostgreSQL running; {}",
                psql_hint(&cluster, cluster::DEFAULT_DATABASE)
            )?;
        }
        ClusterAction::Stop => {
            cluster.stop()?;
            say!("embedded PostgreSQL stopped")?;
        }
        ClusterAction::Status => {
            let state = cluster.state()?;
            say!("data directory: {}", cluster.data_dir().display())?;
            say!("server: {}", cluster.bindir.display())?;
            match state {
                State::NotInitialized => {
                    say!("state: not initialised (pgx initialises it on first use)")?
                }
                State::Stopped => say!("state: stopped")?,
                State::Running => {
                    let db = if crate::target::default_database_exists(&cluster)? {
                        cluster::DEFAULT_DATABASE
                    } else {
                        "postgres"
                    };
                    say!("state: running; {}", psql_hint(&cluster, db))?
                }
            }
            return Ok(if state == State::Running {
                exit::OK
            } else {
                exit::NOT_RUNNING
            });
        }
        ClusterAction::Destroy => {
            cluster.destroy()?;
            say!("embedded PostgreSQL removed ({})", cluster.root.display())?;
        }
    }
    Ok(exit::OK)
}

fn psql_hint(cluster: &cluster::Cluster, dbname: &str) -> String {
    format!(
        "connect with: psql -h {} -p {} -U {} {}",
        cluster.socket_dir().display(),
        cluster::PORT,
        cluster::SUPERUSER,
        dbname
    )
}

fn gc(options: &TargetOptions, args: &crate::cli::GcArgs) -> Result<u8> {
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
    let dir = json
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let others = crate::report::other_scales(dir, &result);
    std::fs::write(&md, crate::report::markdown::render_with(&result, &others)).map_err(|e| {
        crate::error::fail(
            format!("cannot write {}: {e}", md.display()),
            format!(
                "the Markdown goes beside its JSON: make {} writable, or copy the JSON to a directory you can write and render it there",
                md.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."))
                    .display()
            ),
        )
    })?;
    say!("wrote {}", md.display())?;
    Ok(exit::OK)
}
