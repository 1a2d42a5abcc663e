//! Promoting a variant: classify its statements, learn the schema on a scratch
//! database, write the migration, apply it there, write it to `migrations/`, and lint it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use postgres::Client;

use super::schema::{self, IndexKind, Scratch};
use super::{Classified, CreateIndex, Source, Step, classify, file_name, fit_identifier};
use crate::error::fail;
use crate::experiment::result::ExperimentResult;
use crate::experiment::spec::{self, Spec};
use crate::migrate::{self, MigrationFile};
use crate::target::{Target, TargetOptions};

/// Exit code when the migration was written but `pgx lint` finds hazards in it.
pub const EXIT_LINT_FINDINGS: u8 = crate::exit::ATTENTION;

/// What to promote: the experiment (a name or a path) and its variant; where the
/// migration goes (default: the experiment's migrations directory), the report whose
/// evidence it cites (default `reports/<experiment>.json`), the `lock_timeout` it sets.
#[derive(Debug, Clone)]
pub struct Request {
    pub experiment: String,
    pub variant: String,
    pub dir: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub dry_run: bool,
    pub lock_timeout: String,
}

/// Promote a variant, saying what was written and what `pgx lint` found; the exit code
/// is [`EXIT_LINT_FINDINGS`] when it found hazards.
pub fn run(options: &TargetOptions, args: &Request) -> Result<u8> {
    let path = spec::resolve_path(&args.experiment);
    let spec = spec::read(&path)?;
    let sql = variant_sql(&spec, &args.variant)?;
    let classified = classify(&sql);
    refuse(&spec, &args.variant, &classified)?;
    let lock_timeout = lock_timeout(&args.lock_timeout)?;

    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::project_root().join(&spec.schema.migrations));
    let files = migrate::load_dir(&dir)?;
    let name = file_name(next_version(&files), &args.variant);
    let stem = name_stem(&name);
    if let Some(existing) = files.iter().find(|f| f.name == stem) {
        return Err(fail(
            format!(
                "variant {} is already promoted: {}",
                args.variant,
                existing.path.display()
            ),
            "edit that migration (if it is not applied anywhere yet) or promote under a new variant name",
        ));
    }

    let report_path = args.report.clone().unwrap_or_else(|| {
        crate::project_root()
            .join("reports")
            .join(format!("{}.json", spec.name))
    });
    let (evidence, warning) = evidence(&spec, &args.variant, &report_path);
    if let Some(warning) = &warning {
        crate::note!("pgx promote: {warning}");
    }

    let target = Target::resolve(options)?;
    let scratch = Scratch::create(&target)?;
    let mut client = scratch.connect()?;
    let quiet = migrate::ApplyOptions::default();
    migrate::apply(&mut client, &files, &quiet).map_err(|e| {
        fail(
            format!(
                "the migrations in {} do not apply to an empty database, which pgx needs to learn the schema: {e:#}",
                dir.display()
            ),
            "fix them first (`pgx apply` on an empty database shows the same error)",
        )
    })?;
    let planned = plan(&mut client, &classified, &lock_timeout)?;
    let content = format!(
        "{}\n{}",
        header(&spec, args, &name, &planned, &evidence),
        planned.body
    );
    let applied = verify(&mut client, &files, &name, &content, &planned)?;
    drop(client);
    drop(scratch);

    let path = dir.join(&name);
    if args.dry_run {
        crate::output::text(&content)?;
    } else {
        std::fs::write(&path, &content).map_err(|e| {
            fail(
                format!("cannot write {}: {e}", path.display()),
                "check that the migrations directory is writable",
            )
        })?;
    }
    let findings = crate::lint::lint_text(&path, &content, &crate::lint::RuleSet::default());
    let shown = if args.dry_run {
        format!("{name} (not written: --dry-run)")
    } else {
        format!("wrote {}", path.display())
    };
    let versioned: Vec<&MigrationFile> = files
        .iter()
        .filter(|f| f.kind == migrate::Kind::Versioned)
        .collect();
    let versions = versioned
        .first()
        .zip(versioned.last())
        .map(|(a, b)| {
            if a.version == b.version {
                format!("V{}", a.version)
            } else {
                format!("V{}–V{}", a.version, b.version)
            }
        })
        .unwrap_or_else(|| "no earlier migrations".into());
    crate::note!("{shown}");
    crate::note!(
        "  {}; applied to a scratch database with {versions} first: {applied}",
        planned.summary()
    );
    if findings.is_empty() {
        crate::note!("  pgx lint: no findings");
    } else {
        for d in &findings {
            crate::note!("{}\n", d.render("warning"));
        }
        crate::note!(
            "pgx promote: {}, but pgx lint found {} hazard(s) in it: fix them (or accept one with `-- pgx:lint-ignore RULE`) before applying",
            if args.dry_run {
                "the migration runs"
            } else {
                "the migration was written"
            },
            findings.len()
        );
        return Ok(EXIT_LINT_FINDINGS);
    }
    if spec.load.is_some() {
        crate::note!(
            "  next: review it, `pgx rehearse {}` to see it under load, then `pgx apply`",
            spec.name
        );
    } else {
        crate::note!(
            "  next: review it, `pgx rehearse <an experiment with a load: on these tables>` to see it under load, then `pgx apply`"
        );
    }
    Ok(crate::exit::OK)
}

/// One above the highest versioned migration's first part: after V5 and V5.1 comes V6.
fn next_version(files: &[MigrationFile]) -> u64 {
    files
        .iter()
        .filter(|f| f.kind == migrate::Kind::Versioned)
        .map(|f| &f.version)
        .max()
        .and_then(|v| v.to_string().split('.').next()?.parse::<u64>().ok())
        .unwrap_or(0)
        + 1
}

/// "brin_parent" of "V6__brin_parent.sql".
fn name_stem(file: &str) -> String {
    file.split_once("__")
        .map(|(_, rest)| rest.trim_end_matches(".sql").to_string())
        .unwrap_or_default()
}

fn variant_sql(spec: &Spec, variant: &str) -> Result<String> {
    if !spec.variants.contains_key(variant) {
        return Err(fail(
            format!("experiment {} has no variant {variant:?}", spec.name),
            format!(
                "its variants: {}",
                spec.variants.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let sql = spec.variant_sql(variant)?;
    let vars = spec::scaled_vars(spec, spec.dataset.scale);
    let sql = spec::substitute(&sql, &vars, &format!("variant {variant}"))?;
    if sql.trim().is_empty() {
        let with_sql: Vec<String> = spec
            .variants
            .iter()
            .filter(|(_, v)| v.sql.is_some() || v.file.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        return Err(fail(
            format!(
                "variant {variant}{} has no SQL: it is the schema as the migrations leave it, nothing to promote",
                if variant == spec.baseline {
                    " (the baseline)"
                } else {
                    ""
                }
            ),
            format!("promote a variant with statements: {}", with_sql.join(", ")),
        ));
    }
    Ok(sql)
}

/// Where a statement of the variant is, for messages: the YAML line when the SQL is
/// inline, else the variant's file and line.
fn locate(spec: &Spec, variant: &str, source: &Source) -> String {
    if let Some(file) = spec.variants.get(variant).and_then(|v| v.file.as_ref()) {
        return format!("{}:{}", relative(&spec.dir.join(file)), source.line);
    }
    let head = source.head();
    let head = head.trim_end_matches('…');
    let start = spec
        .source
        .lines()
        .position(|l| l.trim_start().starts_with(&format!("{variant}:")))
        .unwrap_or(0);
    let line = spec
        .source
        .lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| l.contains(head))
        .map(|(i, _)| i + 1);
    match line {
        Some(line) => format!("{}:{line}", relative(&spec.path)),
        None => format!(
            "{} (variant {variant}, statement at line {} of its SQL)",
            relative(&spec.path),
            source.line
        ),
    }
}

fn refuse(spec: &Spec, variant: &str, classified: &Classified) -> Result<()> {
    if classified.refused.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "variant {variant} cannot be promoted as it is: {} statement(s) would not be safe on a live database, or belong to the experiment only:",
        classified.refused.len()
    );
    for r in &classified.refused {
        let _ = write!(
            message,
            "\n  {}: `{}`\n      {}",
            locate(spec, variant, &r.source),
            r.source.head(),
            r.reason
        );
    }
    Err(fail(
        message,
        "pgx promotes index builds and drops (made CONCURRENTLY), ANALYZE, VACUUM and catalog changes; write what remains as a migration by hand (`pgx lint` and `pgx rehearse` check it), or drop those statements from the variant",
    ))
}

fn lock_timeout(text: &str) -> Result<String> {
    let Some(duration) = spec::parse_duration(text) else {
        return Err(fail(
            format!("--lock-timeout {text:?} is not a duration"),
            "write it like 5s, 500ms or 1min",
        ));
    };
    if duration.is_zero() {
        return Err(fail(
            "--lock-timeout 0 would wait forever for a lock, queueing traffic behind it",
            "give a few seconds, e.g. 5s",
        ));
    }
    let ms = duration.as_millis();
    Ok(if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

/// The migration's statements and what the header says about them.
#[derive(Debug, Default)]
pub struct Planned {
    pub body: String,
    /// Qualified names of the indexes built (the parent's, for a partitioned table).
    pub built: Vec<String>,
    /// Qualified names of existing indexes dropped.
    pub dropped: Vec<String>,
    /// How the migration differs from the experiment's SQL.
    pub changes: Vec<String>,
    partition_builds: usize,
}

impl Planned {
    pub fn summary(&self) -> String {
        let mut s = format!("{} index(es) built", self.built.len());
        if self.partition_builds > 0 {
            let _ = write!(s, " ({} partition builds)", self.partition_builds);
        }
        let _ = write!(s, ", {} dropped", self.dropped.len());
        s
    }
}

fn comment(out: &mut String, text: &str) {
    for line in wrap(text, 88) {
        let _ = writeln!(out, "-- {line}");
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn origin(source: &Source) -> String {
    format!("Variant line {}: {}", source.line, source.head())
}

/// The statements, in production order: everything as the variant has it, except that
/// every DROP INDEX runs after every build (queries always have an index).
pub fn plan(client: &mut Client, classified: &Classified, lock_timeout: &str) -> Result<Planned> {
    let mut p = Planned::default();
    let _ = writeln!(p.body, "SET lock_timeout = '{lock_timeout}';\n");
    let steps = &classified.steps;
    let last_create = steps
        .iter()
        .rposition(|s| matches!(s, Step::CreateIndex(_)));
    let first_drop = steps
        .iter()
        .position(|s| matches!(s, Step::DropIndex { .. }));
    if let (Some(create), Some(drop)) = (last_create, first_drop)
        && drop < create
    {
        p.changes.push("the DROP INDEX statements run after the builds (the experiment dropped first, on its idle copy), so the queries always have an index".into());
    }
    if steps.iter().any(|s| matches!(s, Step::CreateIndex(_))) {
        p.changes.push("indexes are built CONCURRENTLY IF NOT EXISTS, so writes go on and the file can run again".into());
    }
    let dropped: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::DropIndex { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let ordered = steps
        .iter()
        .filter(|s| !matches!(s, Step::DropIndex { .. }))
        .chain(steps.iter().filter(|s| matches!(s, Step::DropIndex { .. })));
    for step in ordered {
        match step {
            Step::CreateIndex(index) => create_index(client, index, &dropped, &mut p)?,
            Step::DropIndex { source, name } => drop_index(client, source, name, &mut p)?,
            Step::Keep { source, note } => {
                match note {
                    Some(note) => comment(&mut p.body, &format!("{}. {note}.", origin(source))),
                    None => comment(&mut p.body, &format!("{}.", origin(source))),
                }
                let _ = writeln!(p.body, "{};\n", source.text);
            }
        }
    }
    let _ = writeln!(p.body, "RESET lock_timeout;");
    Ok(p)
}

fn create_index(
    client: &mut Client,
    index: &CreateIndex,
    dropped: &[String],
    p: &mut Planned,
) -> Result<()> {
    let Some(table) = schema::table(client, &index.table)? else {
        return Err(fail(
            format!(
                "table {} (variant line {}) is not in the schema migrations/ builds",
                index.table, index.source.line
            ),
            "pgx promotes indexes on the tables your migrations create; an experiment whose dataset steps create the table has nothing to migrate",
        ));
    };
    let raw = schema::identifier(client, &index.name)?;
    if schema::index_exists(client, &table.relation.schema, &raw)? {
        let replaced = dropped.iter().any(|d| {
            d.rsplit('.')
                .next()
                .is_some_and(|n| n.trim_matches('"').eq_ignore_ascii_case(&raw))
        });
        return Err(fail(
            format!(
                "index {raw} already exists in the schema migrations/ builds{}: CREATE INDEX ... IF NOT EXISTS would skip it",
                if replaced {
                    " (the variant drops and re-creates it)"
                } else {
                    ""
                }
            ),
            "give the new index a name of its own in the experiment: production then builds the new one while the old one still serves, and drops the old one after",
        ));
    }
    let name = schema::quote(client, &raw)?;
    let qualified = format!("{}.{name}", table.relation.schema);
    p.built.push(qualified.clone());
    if !table.partitioned {
        comment(
            &mut p.body,
            &format!(
                "{}. Built CONCURRENTLY: SHARE UPDATE EXCLUSIVE on {}, so reads and writes go on; it scans the table twice and waits for the transactions older than it.",
                origin(&index.source),
                table.relation.qualified
            ),
        );
        let _ = writeln!(
            p.body,
            "{};\n",
            index.render(&name, &table.relation.qualified, true, false)
        );
        return Ok(());
    }
    let leaves = table.leaves();
    p.changes.push(format!(
        "{} is partitioned ({leaves} partitions), and PostgreSQL cannot build an index on a partitioned table CONCURRENTLY: {raw} is created on the parent alone (ON ONLY), built CONCURRENTLY on each partition and attached to it; it becomes valid when the last partition's is attached",
        table.relation.qualified
    ));
    comment(
        &mut p.body,
        &format!(
            "{}. {} is partitioned: first the index on the parent alone (ON ONLY: an empty, invalid shell; a moment's SHARE lock on the parent only), then each partition's, built CONCURRENTLY and attached (ATTACH takes no table lock that blocks reads or writes).",
            origin(&index.source),
            table.relation.qualified
        ),
    );
    let _ = writeln!(
        p.body,
        "-- pgx:lint-ignore require-concurrent-index-creation -- ON ONLY builds nothing: the partitions are built concurrently below"
    );
    let _ = writeln!(
        p.body,
        "{};\n",
        index.render(&name, &table.relation.qualified, false, true)
    );
    // Each partition's index, named <partition>_<index> (as the explain signatures
    // normalise them), attached to its parent's.
    let mut index_of: HashMap<u32, String> = HashMap::new();
    index_of.insert(table.relation.oid, qualified);
    for (partition, parent, leaf) in &table.partitions {
        let raw = fit_identifier(&format!("{}_{raw}", partition.name));
        let part_name = format!("{}.{}", partition.schema, schema::quote(client, &raw)?);
        let Some(parent_index) = index_of.get(parent).cloned() else {
            continue;
        };
        let local = schema::quote(client, &raw)?;
        if *leaf {
            let _ = writeln!(
                p.body,
                "{};",
                index.render(&local, &partition.qualified, true, false)
            );
            p.partition_builds += 1;
        } else {
            let _ = writeln!(
                p.body,
                "-- pgx:lint-ignore require-concurrent-index-creation -- ON ONLY: a sub-partitioned partition, built below"
            );
            let _ = writeln!(
                p.body,
                "{};",
                index.render(&local, &partition.qualified, false, true)
            );
        }
        let _ = writeln!(
            p.body,
            "ALTER INDEX {parent_index} ATTACH PARTITION {part_name};"
        );
        index_of.insert(partition.oid, part_name);
    }
    p.body.push('\n');
    Ok(())
}

fn drop_index(client: &mut Client, source: &Source, name: &str, p: &mut Planned) -> Result<()> {
    let found = schema::index(client, name)?;
    match (found.kind, found.qualified) {
        (IndexKind::Plain, Some(q)) => {
            comment(
                &mut p.body,
                &format!(
                    "{}. Dropped CONCURRENTLY: it waits for the queries using the index and blocks none.",
                    origin(source)
                ),
            );
            let _ = writeln!(p.body, "DROP INDEX CONCURRENTLY IF EXISTS {q};\n");
            p.dropped.push(q);
        }
        (IndexKind::Partitioned, Some(q)) => {
            let table = found.table.unwrap_or_else(|| "its table".into());
            comment(
                &mut p.body,
                &format!(
                    "{}. {q} is the index of a partitioned table, and PostgreSQL has no DROP INDEX CONCURRENTLY for it: this takes ACCESS EXCLUSIVE on {table} and its {} partitions for a moment (catalog only, no scan), but it waits behind any running query on them and every later query waits behind it. lock_timeout (above) makes it give up instead of queueing traffic; run it at a quiet moment.",
                    origin(source),
                    found.partitions
                ),
            );
            let _ = writeln!(
                p.body,
                "-- pgx:lint-ignore require-concurrent-index-deletion -- no concurrent form for a partitioned index"
            );
            let _ = writeln!(p.body, "DROP INDEX IF EXISTS {q};\n");
            p.changes.push(format!(
                "{q} is a partitioned index: dropped without CONCURRENTLY (there is no such form), under lock_timeout"
            ));
            p.dropped.push(q);
        }
        _ => {
            comment(
                &mut p.body,
                &format!(
                    "{}. Not in the schema migrations/ builds (the experiment's dataset made it?); IF EXISTS makes this harmless where it does not exist.",
                    origin(source)
                ),
            );
            let _ = writeln!(p.body, "DROP INDEX CONCURRENTLY IF EXISTS {name};\n");
        }
    }
    Ok(())
}

fn git_head() -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(crate::project_root())
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn header(spec: &Spec, args: &Request, name: &str, p: &Planned, evidence: &[String]) -> String {
    let mut h = format!("{}\n", migrate::NO_TRANSACTION_MARKER);
    let about = spec
        .variants
        .get(&args.variant)
        .map(|v| v.about.clone())
        .unwrap_or_default();
    comment(
        &mut h,
        &format!(
            "{}: promoted by `pgx promote {} {}` (pgx {}, commit {}).",
            name.trim_end_matches(".sql"),
            spec.name,
            args.variant,
            env!("CARGO_PKG_VERSION"),
            git_head()
        ),
    );
    comment(
        &mut h,
        &format!(
            "Variant `{}` of {}{}",
            args.variant,
            relative(&spec.path),
            if about.is_empty() {
                ".".to_string()
            } else {
                format!(": {}.", about.trim_end_matches('.'))
            }
        ),
    );
    h.push_str("--\n");
    for line in evidence {
        if let Some(item) = line.strip_prefix("  ") {
            let _ = writeln!(h, "--   {item}");
        } else {
            comment(&mut h, line);
        }
    }
    h.push_str("--\n");
    if !p.changes.is_empty() {
        comment(&mut h, "What differs from the experiment's SQL:");
        for change in &p.changes {
            let mut lines = wrap(change, 84).into_iter();
            if let Some(first) = lines.next() {
                let _ = writeln!(h, "-- - {first}");
            }
            for line in lines {
                let _ = writeln!(h, "--   {line}");
            }
        }
        h.push_str("--\n");
    }
    comment(
        &mut h,
        "pgx apply runs this file statement by statement in autocommit (first line). Every statement can run again (IF NOT EXISTS / IF EXISTS). A build that fails (lock_timeout, a unique violation) leaves an INVALID index: `pgx status` lists it; drop it with DROP INDEX CONCURRENTLY and apply again.",
    );
    h
}

/// A path as the project names it (relative to its root where possible).
fn relative(path: &Path) -> String {
    let root = crate::project_root();
    path.strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The header's evidence lines (an item line starts with two spaces), and a warning when
/// the report cannot be cited.
fn evidence(spec: &Spec, variant: &str, path: &Path) -> (Vec<String>, Option<String>) {
    let shown = relative(path);
    let missing = |why: String| {
        (
            vec![format!(
                "Evidence: none cited: {why}. Run `pgx experiment {}`, commit its report, and promote again to cite it.",
                spec.name
            )],
            Some(why),
        )
    };
    if !path.is_file() {
        return missing(format!("{shown} does not exist"));
    }
    let read = std::fs::read_to_string(path)
        .map_err(anyhow::Error::from)
        .and_then(|text| crate::report::json::parse(&text));
    let report: ExperimentResult = match read {
        Ok(r) => r,
        Err(e) => return missing(format!("{shown} cannot be cited: {e:#}")),
    };
    if report.experiment != spec.name {
        return missing(format!(
            "{shown} is a report of experiment {}, not {}",
            report.experiment, spec.name
        ));
    }
    let cells: Vec<_> = report
        .compared_cells()
        .filter(|c| c.variant == variant)
        .collect();
    if cells.is_empty() {
        return missing(format!(
            "{shown} has no cells of variant {variant} (was it run with --only?)"
        ));
    }
    let e = &report.environment;
    let mut lines = vec![format!(
        "Evidence: {shown} (measured at commit {}, {}, scale {}, {}), execution time against the baseline `{}`{}:",
        e.git_commit,
        e.date,
        report.scale,
        e.postgres_version,
        report.baseline,
        if report.analysis.noisy.is_some() {
            " (a noisy run: its timings name no winner; plans and buffers still hold)"
        } else {
            ""
        }
    )];
    let several_settings = report.settings.len() > 1;
    let several_caches = report.cells.iter().any(|c| c.cache != "warm");
    for c in cells {
        let mut label = format!("{} · {}", c.query, c.params);
        if several_settings {
            let _ = write!(label, " · {}", c.settings);
        }
        if several_caches {
            let _ = write!(label, " · {}", c.cache);
        }
        if report
            .queries
            .iter()
            .find(|q| q.name == c.query)
            .is_some_and(|q| q.forms.len() > 1)
        {
            let _ = write!(label, " · {}", c.form);
        }
        let change = crate::report::fmt_change(c.change.as_ref());
        let verdict = match c.change.map(|ch| ch.verdict) {
            Some(crate::stats::Verdict::Faster | crate::stats::Verdict::Slower) => {
                format!(" ({})", crate::report::verdict_word(c.change.as_ref()))
            }
            _ => String::new(),
        };
        lines.push(format!(
            "  {label}: {change}{verdict}; {}",
            crate::report::fmt_evidence(c)
        ));
    }
    if let Some(v) = report.variants.iter().find(|v| v.name == variant) {
        let baseline = report.variants.iter().find(|b| b.name == report.baseline);
        lines.push(format!(
            "Built in {:.2} s at that scale; indexes {}{}.",
            v.build_seconds(),
            crate::report::fmt_bytes(index_bytes(v)),
            baseline
                .map(|b| format!(" (baseline {})", crate::report::fmt_bytes(index_bytes(b))))
                .unwrap_or_default()
        ));
    }
    (lines, None)
}

fn index_bytes(v: &crate::experiment::result::VariantResult) -> i64 {
    v.relations
        .iter()
        .filter(|r| r.kind == crate::experiment::result::RelationKind::Index)
        .map(|r| r.bytes)
        .sum()
}

/// Apply the new migration on the scratch schema: it must run, and leave every index it
/// builds valid and every index it drops gone. Returns what was checked, for the output.
fn verify(
    client: &mut Client,
    files: &[MigrationFile],
    name: &str,
    content: &str,
    planned: &Planned,
) -> Result<String> {
    let dir = tempfile::tempdir()?;
    for f in files {
        let file = f
            .path
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("{}.sql", f.label())));
        std::fs::write(dir.path().join(file), &f.sql)?;
    }
    std::fs::write(dir.path().join(name), content)?;
    let all = migrate::load_dir(dir.path())?;
    let started = std::time::Instant::now();
    migrate::apply(client, &all, &migrate::ApplyOptions::default()).map_err(|e| {
        fail(
            format!("the promoted migration does not run on the schema migrations/ builds, so it was not written: {e:#}"),
            "this is a statement that needs the experiment's dataset, or a pgx bug worth reporting; `--dry-run` prints the migration",
        )
    })?;
    let took = started.elapsed().as_secs_f64();
    for index in &planned.built {
        if schema::index_valid(client, index)? != Some(true) {
            return Err(fail(
                format!(
                    "the promoted migration ran on the scratch schema, but index {index} is not valid there (pg_index.indisvalid), so it was not written"
                ),
                "a pgx bug worth reporting, with the variant's SQL",
            ));
        }
    }
    for index in &planned.dropped {
        if schema::index_valid(client, index)?.is_some() {
            return Err(fail(
                format!(
                    "the promoted migration ran on the scratch schema, but index {index} is still there"
                ),
                "a pgx bug worth reporting, with the variant's SQL",
            ));
        }
    }
    let invalid = migrate::invalid_indexes(client)?;
    if !invalid.is_empty() {
        return Err(fail(
            format!(
                "the promoted migration left INVALID indexes on the scratch schema: {}",
                invalid.join(", ")
            ),
            "a pgx bug worth reporting, with the variant's SQL",
        ));
    }
    Ok(format!(
        "it ran in {took:.2} s and every index it builds is valid (pg_index.indisvalid)"
    ))
}
