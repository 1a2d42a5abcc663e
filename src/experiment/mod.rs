//! `pgx experiment`: build a dataset once, measure every variant on its own copy, report.
//!
//! `spec` reads the YAML file; `databases` builds and caches the base and makes the
//! per-variant copies; `runner` walks the matrix and `measure` runs one cell;
//! `result` is the one type every reporter in `crate::report` reads.

pub mod databases;
pub mod environment;
pub mod measure;
pub mod progress;
pub mod result;
pub mod runner;
pub mod settings;
pub mod spec;
pub mod tables;

use anyhow::Result;

use crate::cli::ExperimentArgs;
use crate::target::{Target, TargetOptions};

pub use result::ExperimentResult;
pub use runner::{RunOptions, run};

pub fn run_command(options: &TargetOptions, args: &ExperimentArgs) -> Result<u8> {
    let path = spec::resolve_path(&args.name);
    let spec = spec::load(&path)?;
    if let Some(scale) = args.scale
        && (scale.is_nan() || scale <= 0.0)
    {
        return Err(crate::error::fail(
            format!("--scale {scale} must be above 0"),
            "1 is the seed's production size; 0.01 is a quick run",
        ));
    }
    let target = Target::resolve(options)?;
    let mut progress = progress::Progress::new(&spec.name);
    let run_options = RunOptions {
        scale: args.scale,
        repeat: args.repeat,
        warmup: args.warmup,
        only: args.only.clone(),
        rebuild: args.rebuild,
    };
    if args.dataset_only {
        let info = runner::prepare_dataset(&target, &spec, &run_options, &mut progress);
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
        return Ok(0);
    }
    let result = run(&target, &spec, &run_options, &mut progress);
    progress.finish();
    let result = result?;
    // A closed stdout (`| head`) must not lose the run: the reports are written first.
    let shown = crate::say!("{}", crate::report::terminal::render(&result));
    // A non-default scale gets its own report, so the default one stays comparable.
    let stem = match args.scale {
        Some(scale) if scale != spec.dataset.scale => format!("{}-scale{scale}", spec.name),
        _ => spec.name.clone(),
    };
    let written = crate::report::write_reports(&result, &args.out_dir(), &stem)?;
    shown?;
    for path in written {
        crate::say!("wrote {}", path.display())?;
    }
    if result.interrupted {
        eprintln!("pgx: interrupted; the report holds only what was measured before");
        return Err(anyhow::Error::new(crate::error::Interrupted));
    }
    Ok(0)
}
