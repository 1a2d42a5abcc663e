//! `pgx experiment`: build a dataset once, measure every variant on a copy that holds
//! what it changes, report.
//!
//! The data flows one way: `spec` (the YAML file) → `plan` (the file and the command
//! line resolved: variants and how each is built, the axes, the schedule and limits) →
//! `engine` (copies and builds, the evidence pass, interleaved rounds that stop when the
//! answer is known, equivalence, load, maintenance; it returns `measured`
//! measurements) → `analysis` (statistics, noise floor, verdicts, winners: every
//! conclusion computed once) → `result`, the one type every reporter in
//! `crate::report` reads. `databases` builds and caches the base; `sharing` decides
//! which variants share a copy; `variants` caches builds.

pub mod against;
pub mod analysis;
pub mod databases;
pub mod dataset;
pub mod engine;
pub mod environment;
pub mod gc;
pub mod matrix;
pub mod measured;
pub mod merge;
pub mod plan;
pub mod progress;
pub mod result;
pub mod screen;
pub mod settings;
pub mod sharing;
pub mod source;
pub mod spec;
pub mod tables;
pub mod variants;

use anyhow::Result;

use crate::target::Target;

pub use plan::RunOptions;
pub use result::ExperimentResult;

use self::progress::Progress;

/// Run an experiment: its plan resolved, the dataset prepared (or found in the cache),
/// the plan measured, the measurements analysed; afterwards the variant cache is kept
/// within its disk budget.
pub fn run(
    target: &Target,
    spec: &spec::Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<ExperimentResult> {
    // `server: durable`: on pgx's own server, the durable cluster beside it; elsewhere the
    // server must be durable already.
    if spec.server == spec::ServerKind::Durable {
        if let Target::Embedded(usage) = target
            && !usage.cluster().is_durable()
        {
            let durable = usage.cluster().durable();
            progress.line(&format!(
                "server: durable (fsync, full_page_writes, wal_level = replica): the embedded cluster at {}",
                durable.root.display()
            ));
            let durable = Target::Embedded(durable.attach()?);
            return run(&durable, spec, options, progress);
        }
        check_durable(target)?;
    }
    let load_before = crate::host::load_average();
    let started = std::time::Instant::now();
    if let Some(scale) = options.scale {
        spec::check_scale(spec, scale, "--scale")?;
    }
    let plan = plan::resolve(spec, options)?;
    let base = dataset(target, spec, options, progress)?;
    let dataset_seconds = started.elapsed().as_secs_f64();
    let measured = engine::run(target, &plan, base, dataset_seconds, progress)?;
    let mut result = analysis::analyze(measured);
    // The run's in-use locks went with its databases: keep the variant cache in budget.
    let mut admin = crate::target::connect(&target.admin_config())?;
    let free = databases::free_disk(&mut admin);
    let budget = variants::budget(&mut admin, free)?;
    for name in variants::trim(&mut admin, budget)? {
        progress.line(&format!(
            "dropped {name} from the variant cache (disk budget)"
        ));
    }
    result.environment.load_before = load_before;
    result.environment.load_after = crate::host::load_average();
    Ok(result)
}

/// An experiment that asks for `server: durable` runs only where a commit is durable.
fn check_durable(target: &Target) -> Result<()> {
    let mut client = crate::target::connect(&target.admin_config())?;
    let mut off = Vec::new();
    for name in ["fsync", "full_page_writes"] {
        let value: String = client
            .query_one("SELECT current_setting($1)", &[&name])?
            .get(0);
        if value != "on" {
            off.push(format!("{name} = {value}"));
        }
    }
    if off.is_empty() {
        return Ok(());
    }
    Err(crate::error::fail(
        format!(
            "the experiment asks for server: durable, but the server runs {}",
            off.join(", ")
        ),
        "run it on pgx's embedded server (unset DATABASE_URL / PG*), which starts a durable cluster for it, or on a server configured like production",
    ))
}

/// The experiment's base: reused from the cache or built (migrations, steps, VACUUM ANALYZE).
pub fn prepare_dataset(
    target: &Target,
    spec: &spec::Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<result::DatasetInfo> {
    Ok(dataset(target, spec, options, progress)?.info)
}

fn dataset(
    target: &Target,
    spec: &spec::Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<databases::Base> {
    let mut admin = crate::target::connect(&target.admin_config())?;
    databases::check_can_create_databases(&mut admin)?;
    for name in gc::drop_orphans(&mut admin)? {
        progress.line(&format!(
            "dropped {name}, left behind by a pgx that is gone"
        ));
    }
    let scale = options.scale.unwrap_or(spec.dataset.scale);
    progress.set_total(spec.dataset.steps.len() as u64 + 2);
    let base = databases::prepare_base(
        target,
        &mut admin,
        spec,
        scale,
        options.rebuild,
        &mut |step, done| match done {
            None => progress.message(&format!("dataset: {step}")),
            Some(seconds) => {
                progress.tick(1);
                progress.line(&format!("dataset step {step}: {seconds:.1}s"));
            }
        },
    )?;
    if base.info.reused {
        progress.line(&format!(
            "dataset: reusing cached base {} (built in {:.1}s for {})",
            base.info.database, base.info.build_seconds, base.info.built_for
        ));
    }
    Ok(base)
}

/// What failed in a run: variants that did not build, cells that errored or timed out.
/// Settings sets reported as not applicable are not failures: they are an answer.
pub fn failures(result: &ExperimentResult) -> Vec<String> {
    let not_applicable = |name: &str| {
        result
            .settings
            .iter()
            .any(|s| s.name == name && s.not_applicable.is_some())
    };
    let variants = result
        .variants
        .iter()
        .filter(|v| v.error.is_some())
        .map(|v| format!("variant {}", v.name));
    let cells = result
        .cells
        .iter()
        .filter(|c| c.error.is_some() && !not_applicable(&c.settings))
        .map(|c| format!("{} · {} · {} · {}", c.variant, c.query, c.form, c.params));
    variants.chain(cells).collect()
}
