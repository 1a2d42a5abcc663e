//! What each command does, in terms of the library's modules. Returns the exit code.

use anyhow::Result;

use crate::cli::{ApplyArgs, Cli, ClusterAction, Command, DirArg};
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
        Command::Lint(args) => crate::lint::command::lint(&args),
        Command::Rehearse(args) => crate::rehearse::run_command(&options, &args),
        Command::Compare(args) => crate::compare::command::run(&args),
        Command::Promote(args) => crate::promote::command::run(&options, &args),
        Command::Report { json } => render_report(&json),
    }
}

fn apply(options: &TargetOptions, args: &ApplyArgs) -> Result<u8> {
    let files = migrate::load_dir(&args.dir.dir)?;
    let target = Target::resolve(options)?;
    let mut client = target.connect()?;
    crate::lint::command::check_pending(&mut client, &files, args)?;
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
