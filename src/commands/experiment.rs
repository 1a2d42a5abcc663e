//! `pgx experiment NAME`: run an experiment, print its tables, write its reports, and
//! exit 1 when a variant, a dataset step or a cell failed.

use anyhow::Result;

use crate::cli::ExperimentArgs;
use crate::experiment::progress::Progress;
use crate::experiment::{self, spec};
use crate::target::{Target, TargetOptions};

/// Exit code of a run that completed but in which a variant, or a cell, failed: the
/// report is written, and CI can gate on it.
pub const EXIT_FAILED_PARTS: u8 = crate::exit::ATTENTION;

pub fn run(options: &TargetOptions, args: &ExperimentArgs) -> Result<u8> {
    let path = spec::resolve_path(&args.name);
    let mut spec = spec::read(&path)?;
    // `--against REV`: the pull request against the revision, as one A/B experiment.
    let against = match &args.against {
        Some(revision) => {
            let against = experiment::against::resolve(&spec, revision)?;
            spec = against.spec.clone();
            spec.validate()?;
            crate::note!(
                "pgx: against {} ({}): {} = its migrations; {} = {}{}",
                against.revision,
                &against.commit[..against.commit.len().min(12)],
                against.baseline,
                against.candidate,
                if against.pending.is_empty() {
                    "no migration it lacks".to_string()
                } else {
                    format!("+ {}", against.pending.join(", "))
                },
                if against.changed_queries.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; changed queries, old and new form: {}",
                        against.changed_queries.join(", ")
                    )
                }
            );
            Some(against)
        }
        None => None,
    };
    if let Some(scale) = args.scale {
        spec::check_scale(&spec, scale, "--scale")?;
    }
    let budget = args
        .budget
        .as_deref()
        .map(|text| {
            spec::parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    crate::error::fail(
                        format!("--budget {text:?} is not a duration above zero"),
                        "write it like 30s, 500ms or 2min",
                    )
                })
        })
        .transpose()?;
    let mut cache = Vec::new();
    for state in &args.cache {
        match experiment::matrix::CacheState::parse(state) {
            Some(parsed) => cache.push(parsed),
            None => {
                return Err(crate::error::fail(
                    format!("--cache {state:?} is not a cache state"),
                    "cache states are: warm, cold, prewarmed",
                ));
            }
        }
    }
    let target = Target::resolve(options)?;
    let mut progress = Progress::new(&spec.name);
    let run_options = experiment::RunOptions {
        scale: args.scale,
        repeat: args.repeat,
        warmup: args.warmup,
        rounds: args.rounds,
        seed: args.seed,
        only: args.only.clone(),
        rebuild: args.rebuild,
        control: args.no_control.then_some(false),
        budget,
        cache,
        screen: args.screen,
        screen_only: args.screen_only,
        separate_copies: args.separate_copies,
        time_identical: args.time_identical,
        shard: args.shard,
    };
    if args.dataset_only {
        let info = experiment::prepare_dataset(&target, &spec, &run_options, &mut progress);
        progress.finish();
        let info = info?;
        crate::say!(
            "dataset {} {} ({:.1}s); rows: {}",
            info.database,
            if info.reused {
                "already cached"
            } else {
                "built"
            },
            info.build_seconds,
            info.row_counts
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        return Ok(crate::exit::OK);
    }
    let result = experiment::run(&target, &spec, &run_options, &mut progress);
    progress.finish();
    let result = result?;
    // A closed stdout (`| head`) must not lose the run: the reports are written first.
    let shown = crate::say!("{}", crate::report::terminal::render(&result));
    // A non-default scale gets its own report, so the default one stays comparable.
    let mut stem = match args.scale {
        Some(scale) if scale != spec.dataset.scale => format!("{}-scale{scale}", spec.name),
        _ => spec.name.clone(),
    };
    // Estimates alone never replace a run's report; nor does a shard or a pull request's run.
    if args.screen_only {
        stem.push_str("-screen");
    }
    if let Some(shard) = args.shard {
        stem.push_str(&format!("-shard{}of{}", shard.k, shard.n));
    }
    if let Some(against) = &against {
        stem.push_str(&format!("-against-{}", against.baseline));
    }
    let written = crate::report::write_reports(&result, &args.out_dir(), &stem)?;
    shown?;
    for path in written {
        crate::say!("wrote {}", path.display())?;
    }
    // Screening is an extra: when it could not run, say so; the exit code stays the run's.
    if let Some(why) = result
        .screening
        .as_ref()
        .and_then(|s| s.unavailable.as_deref())
    {
        crate::note!("pgx: warning: screening skipped: {why}");
    }
    if let Some(why) = &result.stopped_by {
        crate::note!("pgx: {why}; the report holds only what was measured before");
        return Ok(EXIT_FAILED_PARTS);
    }
    if result.interrupted {
        crate::note!("pgx: interrupted; the report holds only what was measured before");
        return Err(anyhow::Error::new(crate::error::Interrupted));
    }
    let failed = experiment::failures(&result);
    if !failed.is_empty() {
        crate::note!(
            "pgx: the run completed, but these failed (see the report): {}",
            failed.join("; ")
        );
        return Ok(EXIT_FAILED_PARTS);
    }
    // Each failing cell named as the report's tables name it.
    let failed: Vec<String> = experiment::analysis::gate::failures(&result, &args.fail_on)
        .into_iter()
        .map(|f| {
            let cell = &result.cells[f.cell];
            format!(
                "{} · {} · {}: {}",
                crate::report::row_label(&result, cell),
                cell.query,
                crate::report::params_label(&cell.params, &cell.cache),
                f.what
            )
        })
        .collect();
    Ok(super::gate_outcome("experiment", &failed, &args.fail_on))
}
