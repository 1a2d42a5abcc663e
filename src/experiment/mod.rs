//! Experiments: placeholder until the engine lands.
use anyhow::Result;

use crate::cli::ExperimentArgs;
use crate::target::TargetOptions;

pub fn run_command(_options: &TargetOptions, _args: &ExperimentArgs) -> Result<u8> {
    anyhow::bail!("experiments are not implemented yet")
}
