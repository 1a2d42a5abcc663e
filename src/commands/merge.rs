//! `pgx merge SHARD.json...`: the shards of one experiment put together into one report
//! (`crate::experiment::merge`), written beside where the shards' reports go.

use anyhow::Result;

use crate::cli::MergeArgs;
use crate::say;

pub fn run(args: &MergeArgs) -> Result<u8> {
    let mut shards = Vec::new();
    for path in &args.shards {
        let result = crate::report::json::read_file(
            path,
            "give the .json reports `pgx experiment NAME --shard K/N` wrote, one per shard",
        )?;
        shards.push((path.display().to_string(), result));
    }
    // Named after the shards' reports: `<name>[-scaleX]-shard1of4.json` → `<name>[-scaleX]`.
    let stem = args
        .shards
        .first()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .map(|s| match s.rfind("-shard") {
            Some(at) => s[..at].to_string(),
            None => format!("{s}-merged"),
        })
        .unwrap_or_else(|| "merged".into());
    let merged = crate::experiment::merge::merge(shards)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::project_root().join("reports"));
    let shown = say!("{}", crate::report::terminal::render(&merged));
    let written = crate::report::write_reports(&merged, &out, &stem)?;
    shown?;
    for path in written {
        say!("wrote {}", path.display())?;
    }
    Ok(crate::exit::OK)
}
