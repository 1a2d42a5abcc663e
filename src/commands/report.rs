//! `pgx report RUN.json`: render the Markdown report again from a run's JSON.

use anyhow::Result;

use crate::say;

pub fn run(json: &std::path::Path) -> Result<u8> {
    let result = crate::report::json::read_file(
        json,
        "give the .json a `pgx experiment` run wrote, e.g. reports/index-strategies.json",
    )?;
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
    Ok(crate::exit::OK)
}
