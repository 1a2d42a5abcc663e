//! Running an experiment: base, then each variant in its own copy, every cell of the
//! matrix measured, then the statistics against the reference cells.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use postgres::{Client, SimpleQueryMessage};

use super::databases::{Copy, check_can_create_databases, prepare_base};
use super::measure::{CellPlan, fingerprint, measure};
use super::progress::Progress;
use super::result::*;
use super::spec::{Form, Spec, scaled_vars, substitute, yaml_param};
use super::{settings, tables};
use crate::db::TextParam;
use crate::error::{Interrupted, describe_pg_error, fail};
use crate::sqlsplit;
use crate::stats;
use crate::target::{Target, connect};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scale: Option<f64>,
    pub repeat: Option<usize>,
    pub warmup: Option<usize>,
    pub only: Vec<String>,
    pub rebuild: bool,
}

/// A query ready to run: SQL substituted, parameter sets resolved.
struct Query {
    info: QueryInfo,
    forms: Vec<Form>,
    variants: Vec<String>,
    prepared: bool,
    verify: Option<String>,
    params: Vec<Vec<TextParam>>,
}

impl Query {
    fn forms_in<'a>(&'a self, variant: &'a str) -> impl Iterator<Item = &'a Form> + 'a {
        let runs = self.variants.is_empty() || self.variants.iter().any(|v| v == variant);
        self.forms
            .iter()
            .filter(move |f| runs && f.runs_in(variant))
    }
}

/// What every variant shares.
struct Plan<'a> {
    target: &'a Target,
    spec: &'a Spec,
    vars: Vec<(String, String)>,
    runs: RunsUsed,
    settings: Vec<SettingsSet>,
    queries: Vec<Query>,
    base: String,
}

impl Plan<'_> {
    fn ticks_per_cell(&self) -> usize {
        self.runs.warmup + self.runs.repeat + 1
    }

    fn cells_in(&self, variant: &str) -> usize {
        let per_settings: usize = self
            .queries
            .iter()
            .map(|q| q.forms_in(variant).count() * q.params.len())
            .sum();
        per_settings * self.settings.len()
    }

    fn ticks_in(&self, variant: &str) -> u64 {
        (self.cells_in(variant) * self.ticks_per_cell() + 2) as u64
    }
}

pub fn run(
    target: &Target,
    spec: &Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<ExperimentResult> {
    let scale = options.scale.unwrap_or(spec.dataset.scale);
    let runs = RunsUsed {
        warmup: options.warmup.unwrap_or(spec.runs.warmup),
        repeat: options.repeat.unwrap_or(spec.runs.repeat).max(1),
        timeout_ms: spec.timeout()?.as_millis() as u64,
    };
    let variants = selected_variants(spec, &options.only)?;
    let mut admin = connect(&target.admin_config())?;
    let base = dataset(&mut admin, target, spec, options, progress)?;

    let vars = scaled_vars(spec, scale);
    let mut plan = Plan {
        target,
        spec,
        queries: resolve_queries(target, spec, &base.info.database, &vars)?,
        vars,
        runs,
        settings: spec
            .settings_axis()
            .into_iter()
            .map(|(name, values)| SettingsSet {
                name,
                values,
                not_applicable: None,
                applied_server_wide: Vec::new(),
            })
            .collect(),
        base: base.info.database.clone(),
    };
    progress.restart(variants.iter().map(|v| plan.ticks_in(v)).sum());

    let mut variant_results = Vec::new();
    let mut cells = Vec::new();
    let mut interrupted = false;
    let mut equivalences: HashMap<String, Vec<Equivalence>> = HashMap::new();
    for name in &variants {
        if crate::interrupt::is_interrupted() {
            interrupted = true;
            break;
        }
        let ticks = plan.ticks_in(name);
        let started_at = progress.done();
        let outcome = run_variant(
            &mut plan,
            &mut admin,
            name,
            &mut cells,
            &mut equivalences,
            progress,
        );
        let variant = match outcome {
            Ok(variant) => variant,
            Err(err) => {
                // Interrupted: keep what was measured; the report says the run is partial.
                interrupted = err.downcast_ref::<Interrupted>().is_some();
                progress.line(&format!("variant {name} failed: {err:#}"));
                VariantResult {
                    error: Some(format!("{err:#}")),
                    ..empty_variant(spec, name)
                }
            }
        };
        let ticked = progress.done() - started_at;
        progress.tick(ticks.saturating_sub(ticked));
        progress.line(&format!(
            "variant {name}: {}",
            if variant.error.is_some() {
                "FAILED"
            } else {
                "done"
            }
        ));
        variant_results.push(variant);
        if interrupted {
            break;
        }
    }

    compute_statistics(&mut cells, spec, &plan.settings);
    let queries = plan
        .queries
        .into_iter()
        .map(|mut q| {
            q.info.equivalence = equivalences.remove(&q.info.name).unwrap_or_default();
            q.info
        })
        .collect();
    Ok(ExperimentResult {
        experiment: spec.name.clone(),
        about: spec.about.trim().to_string(),
        seed: spec.seed.clone(),
        environment: super::environment::collect(target, &mut admin)?,
        scale,
        runs: plan.runs,
        dataset: base.info,
        baseline: spec.baseline.clone(),
        settings: plan.settings,
        queries,
        variants: variant_results,
        cells,
        interrupted,
    })
}

/// The experiment's base: reused from the cache or built (migrations, steps, VACUUM ANALYZE).
pub fn prepare_dataset(
    target: &Target,
    spec: &Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<DatasetInfo> {
    let mut admin = connect(&target.admin_config())?;
    Ok(dataset(&mut admin, target, spec, options, progress)?.info)
}

fn dataset(
    admin: &mut Client,
    target: &Target,
    spec: &Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<super::databases::Base> {
    check_can_create_databases(admin)?;
    let scale = options.scale.unwrap_or(spec.dataset.scale);
    progress.set_total(spec.dataset.steps.len() as u64 + 2);
    let base = prepare_base(
        target,
        admin,
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

fn about_of(spec: &Spec, variant: &str) -> String {
    spec.variants
        .get(variant)
        .map(|v| v.about.trim().to_string())
        .unwrap_or_default()
}

/// A variant with nothing measured yet (its build fills it in).
fn empty_variant(spec: &Spec, name: &str) -> VariantResult {
    VariantResult {
        name: name.to_string(),
        about: about_of(spec, name),
        statements: Vec::new(),
        relations: Vec::new(),
        error: None,
        workload: None,
        table_stats: Vec::new(),
        maintenance: Vec::new(),
        load: None,
    }
}

/// One variant: copy, build, workload, every cell, maintenance. A failure in the build
/// is returned as an error (the variant is reported as failed, others go on); a failing
/// cell is recorded in the cell.
fn run_variant(
    plan: &mut Plan,
    admin: &mut Client,
    name: &str,
    cells: &mut Vec<Cell>,
    equivalences: &mut HashMap<String, Vec<Equivalence>>,
    progress: &mut Progress,
) -> Result<VariantResult> {
    progress.message(&format!("{name}: building"));
    let copy = Copy::create(plan.target, admin, &plan.base, &plan.spec.name, name)?;
    let mut client = connect(&plan.target.config_for(&copy.name))?;
    let mut variant = empty_variant(plan.spec, name);
    build_variant(&mut client, plan.spec, name, &plan.vars, &mut variant)?;
    progress.tick(1);
    variant.relations = relation_sizes(&mut client)?;
    let parent_index = partition_parents(&mut client, 'i')?;
    let partition_root = partition_parents(&mut client, 'r')?;
    progress.tick(1);

    let pgstattuple = !plan.spec.table_stats.is_empty() && tables::enable_pgstattuple(&mut client);
    let before = tables::snapshot(&mut client, &plan.spec.table_stats, pgstattuple)?;
    if let Some(workload) = &plan.spec.workload {
        progress.message(&format!("{name}: workload"));
        let sql = substitute(&workload.sql, &plan.vars, "workload")?;
        variant.workload = Some(tables::run_workload(&mut client, workload, &sql)?);
    }
    let after = tables::snapshot(&mut client, &plan.spec.table_stats, pgstattuple)?;
    variant.table_stats = before
        .into_iter()
        .zip(after)
        .map(|((table, before), (_, after))| TableStatsChange {
            table,
            before,
            after,
        })
        .collect();

    let embedded = plan.target.is_embedded();
    let ticks_per_cell = plan.ticks_per_cell();
    // Reads before writes: even a rolled-back DELETE clears visibility-map bits and
    // would hand later Index Only Scans heap fetches they would not otherwise have.
    for writes in [false, true] {
        for s in 0..plan.settings.len() {
            let applied = settings::apply(
                &mut client,
                &plan.settings[s].values,
                plan.runs.timeout_ms,
                embedded,
            )?;
            if applied.not_applicable.is_some() {
                plan.settings[s].not_applicable = applied.not_applicable.clone();
            }
            plan.settings[s].applied_server_wide = applied.server_wide.clone();
            let settings_name = plan.settings[s].name.clone();
            for query in plan.queries.iter().filter(|q| q.info.rollback == writes) {
                for (p, params) in query.params.iter().enumerate() {
                    let label = &query.info.params[p].label;
                    let mut prints = Vec::new();
                    for form in query.forms_in(name) {
                        progress.message(&format!(
                            "{name} · {settings_name} · {} · {} · {label}",
                            query.info.name, form.name
                        ));
                        let mut cell =
                            new_cell(name, &settings_name, &query.info.name, &form.name, label);
                        if let Some(reason) = &applied.not_applicable {
                            cell.error = Some(format!("not applicable: {reason}"));
                            progress.tick(ticks_per_cell as u64);
                            cells.push(cell);
                            continue;
                        }
                        let cell_plan = CellPlan {
                            sql: &form.sql,
                            params,
                            rollback: query.info.rollback,
                            prepared: query.prepared,
                            warmup: plan.runs.warmup,
                            repeat: plan.runs.repeat,
                        };
                        let mut ticked = 0;
                        measure(&mut client, &cell_plan, &mut cell, &mut || {
                            ticked += 1;
                            progress.tick(1);
                        })?;
                        progress.tick(ticks_per_cell.saturating_sub(ticked) as u64);
                        if let Some(summary) = &mut cell.plan {
                            summary.index_names = rename(&summary.index_names, &parent_index);
                            // The catalog knows which scanned tables are partitions; the plan
                            // text alone does not always (a DELETE's pruned partition).
                            let partitions = summary
                                .relations
                                .iter()
                                .filter(|r| partition_root.contains_key(*r))
                                .count() as u64;
                            summary.partitions_scanned =
                                partitions.saturating_sub(summary.never_executed);
                            summary.relations = rename(&summary.relations, &partition_root);
                            cell.partitions_total = summary
                                .relations
                                .iter()
                                .filter_map(|r| {
                                    variant.relations.iter().find(|x| {
                                        x.kind == RelationKind::Table
                                            && x.name.ends_with(&format!(".{r}"))
                                    })
                                })
                                .map(|x| x.partitions.max(0) as u64)
                                .sum();
                        }
                        if query.forms.len() > 1 && cell.error.is_none() {
                            let print = fingerprint(
                                &mut client,
                                &form.sql,
                                params,
                                query.verify.as_deref(),
                            )
                            .unwrap_or_else(|err| format!("error: {err:#}"));
                            prints.push((form.name.clone(), print));
                        }
                        cells.push(cell);
                    }
                    if prints.len() > 1 {
                        let equivalent = prints.windows(2).all(|w| w[0].1 == w[1].1);
                        equivalences
                            .entry(query.info.name.clone())
                            .or_default()
                            .push(Equivalence {
                                variant: name.to_string(),
                                settings: settings_name.clone(),
                                params: label.clone(),
                                fingerprints: prints,
                                equivalent,
                            });
                    }
                }
            }
            settings::undo(&mut client, &applied)?;
        }
    }

    if let Some(load) = &plan.spec.load {
        // After the reads: write scripts commit, and change the copy for good.
        progress.message(&format!("{name}: load"));
        let config = plan.target.config_for(&copy.name);
        variant.load = Some(crate::load::run(&config, load, &plan.vars, &mut |m| {
            progress.message(&format!("{name}: load {m}"))
        })?);
    }
    if plan.spec.maintenance && !plan.spec.table_stats.is_empty() {
        progress.message(&format!("{name}: VACUUM / VACUUM FULL"));
        client.batch_execute("RESET ALL")?;
        variant.maintenance = tables::maintenance(&mut client, &plan.spec.table_stats)?;
    }
    drop(client);
    drop(copy);
    Ok(variant)
}

fn new_cell(variant: &str, settings: &str, query: &str, form: &str, params: &str) -> Cell {
    Cell {
        variant: variant.into(),
        settings: settings.into(),
        query: query.into(),
        form: form.into(),
        params: params.into(),
        samples: Vec::new(),
        time: None,
        planning: None,
        execution: None,
        plan: None,
        timed_plan: None,
        signatures: Vec::new(),
        change: None,
        error: None,
        partitions_total: 0,
    }
}

/// The baseline first, then the others in file order; `--only` narrows the others.
fn selected_variants(spec: &Spec, only: &[String]) -> Result<Vec<String>> {
    for name in only {
        if !spec.variants.contains_key(name) {
            return Err(fail(
                format!("--only names an unknown variant {name:?}"),
                format!(
                    "variants of {}: {}",
                    spec.name,
                    spec.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let mut names = vec![spec.baseline.clone()];
    names.extend(
        spec.variants
            .keys()
            .filter(|n| **n != spec.baseline && (only.is_empty() || only.contains(n)))
            .cloned(),
    );
    Ok(names)
}

/// Parameter sets: literal (with {{vars}}) or drawn from the dataset by `params_from`.
fn resolve_queries(
    target: &Target,
    spec: &Spec,
    base: &str,
    vars: &[(String, String)],
) -> Result<Vec<Query>> {
    let mut client: Option<Client> = None;
    let mut out = Vec::new();
    for (name, q) in &spec.queries {
        let sets: Vec<Vec<TextParam>> = if let Some(sql) = &q.params_from {
            let client = match &mut client {
                Some(c) => c,
                None => client.insert(connect(&target.config_for(base))?),
            };
            let sql = substitute(sql, vars, &format!("query {name} params_from"))?;
            let messages = client.simple_query(&sql).map_err(|e| {
                fail(
                    format!(
                        "{}: params_from of query {name} failed: {}",
                        spec.path.display(),
                        describe_pg_error(&e, Some(&sql))
                    ),
                    "params_from must be a SELECT that runs on the dataset",
                )
            })?;
            messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| TextParam(row.get(i).map(str::to_string)))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        } else if let Some(sets) = &q.params {
            sets.iter()
                .map(|set| {
                    set.iter()
                        .map(|v| {
                            let TextParam(text) = yaml_param(v);
                            Ok(TextParam(
                                text.map(|t| substitute(&t, vars, name)).transpose()?,
                            ))
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<_>>()?
        } else {
            vec![Vec::new()]
        };
        if sets.is_empty() {
            return Err(fail(
                format!(
                    "{}: params_from of query {name} returned no rows",
                    spec.path.display()
                ),
                "the dataset has no rows matching it; check the query or the scale",
            ));
        }
        let params = sets
            .iter()
            .enumerate()
            .map(|(i, set)| ParamSet {
                label: q
                    .labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("p{}", i + 1)),
                values: set.iter().map(|p| p.0.clone()).collect(),
            })
            .collect();
        let forms = q
            .sql
            .forms()
            .into_iter()
            .map(|f| {
                Ok(Form {
                    sql: substitute(f.sql.trim(), vars, name)?,
                    ..f
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Query {
            info: QueryInfo {
                name: name.clone(),
                about: q.about.trim().to_string(),
                forms: forms
                    .iter()
                    .map(|f| (f.name.clone(), f.sql.clone()))
                    .collect(),
                params,
                rollback: q.rollback,
                equivalence: Vec::new(),
            },
            forms,
            variants: q.variants.clone(),
            prepared: q.prepared,
            verify: q
                .verify
                .as_ref()
                .map(|v| substitute(v, vars, name))
                .transpose()?,
            params: sets,
        });
    }
    Ok(out)
}

/// Each statement timed on its own (index build times), then ANALYZE so every variant
/// is planned on fresh statistics.
fn build_variant(
    client: &mut Client,
    spec: &Spec,
    name: &str,
    vars: &[(String, String)],
    variant: &mut VariantResult,
) -> Result<()> {
    let sql = substitute(&spec.variant_sql(name)?, vars, &format!("variant {name}"))?;
    client.batch_execute("SET jit = off")?;
    for statement in sqlsplit::split(&sql) {
        crate::interrupt::check()?;
        let started = Instant::now();
        let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
        client.batch_execute(&statement.sql).map_err(|e| {
            if crate::interrupt::is_interrupted() {
                return anyhow::Error::new(Interrupted);
            }
            anyhow::anyhow!(
                "statement at line {} of its SQL: {}",
                statement.line,
                describe_pg_error(&e, Some(&statement.sql))
            )
        })?;
        variant.statements.push(Timing {
            label: one_line(&statement.sql),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    client.batch_execute("ANALYZE")?;
    Ok(())
}

fn one_line(sql: &str) -> String {
    let text: Vec<&str> = sql
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    text.join(" ")
}

/// Partition (or partition index, for kind 'i') name -> its root: plans name the pieces,
/// people think in the tables and indexes they created.
fn partition_parents(client: &mut Client, kind: char) -> Result<HashMap<String, String>> {
    let rows = client.query(
        "SELECT c.relname::text, r.relname::text FROM pg_class c JOIN pg_class r ON r.oid = pg_partition_root(c.oid) \
         WHERE c.relkind = $1 AND c.relispartition",
        &[&(kind as i8)],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn rename(names: &[String], parents: &HashMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| parents.get(n).unwrap_or(n).clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Size of every user table and index, summed over partitions.
pub fn relation_sizes(client: &mut Client) -> Result<Vec<RelationSize>> {
    let rows = client.query(
        "WITH rels AS ( \
           SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) AS name, \
                  coalesce((SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_index i \
                            JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
                            WHERE i.indexrelid = c.oid), format('%I.%I', n.nspname, c.relname)) AS tbl, \
                  coalesce(am.amname::text, '') AS method \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam \
           WHERE c.relkind IN ('r', 'p', 'i', 'I') AND NOT c.relispartition \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             AND n.nspname NOT LIKE 'pg_temp%') \
         SELECT relkind IN ('i', 'I'), name, tbl, method, \
           CASE WHEN relkind = 'i' THEN pg_relation_size(r.oid) WHEN relkind = 'r' THEN pg_table_size(r.oid) \
                ELSE (SELECT coalesce(sum(CASE WHEN r.relkind = 'I' THEN pg_relation_size(pt.relid) \
                                               ELSE pg_table_size(pt.relid) END), 0) \
                      FROM pg_partition_tree(r.oid) pt WHERE pt.isleaf) END::bigint, \
           (SELECT count(*) FROM pg_partition_tree(r.oid) pt WHERE pt.isleaf AND pt.relid <> r.oid) \
         FROM rels r WHERE tbl NOT LIKE '%refinery_schema_history' ORDER BY 1, 3, 2",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| RelationSize {
            kind: if r.get::<_, bool>(0) {
                RelationKind::Index
            } else {
                RelationKind::Table
            },
            name: r.get(1),
            table: r.get(2),
            method: r.get(3),
            bytes: r.get(4),
            partitions: r.get(5),
        })
        .collect())
}

/// Summaries per cell, then each cell against its reference (baseline variant, first
/// settings, first form, same query and parameters), Holm-corrected across the matrix.
fn compute_statistics(cells: &mut [Cell], spec: &Spec, settings: &[SettingsSet]) {
    for cell in cells.iter_mut() {
        cell.time = stats::summarize(&cell.times());
        cell.planning = stats::summarize(
            &cell
                .samples
                .iter()
                .map(|s| s.planning_ms)
                .collect::<Vec<_>>(),
        );
        cell.execution = stats::summarize(
            &cell
                .samples
                .iter()
                .map(|s| s.execution_ms)
                .collect::<Vec<_>>(),
        );
    }
    let reference_settings = settings.first().map(|s| s.name.clone()).unwrap_or_default();
    let first_form: HashMap<&str, String> = spec
        .queries
        .iter()
        .map(|(name, q)| {
            (
                name.as_str(),
                q.sql
                    .forms()
                    .first()
                    .map(|f| f.name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let is_reference = |c: &Cell| {
        c.variant == spec.baseline
            && c.settings == reference_settings
            && first_form.get(c.query.as_str()) == Some(&c.form)
    };
    let references: HashMap<(String, String), Vec<f64>> = cells
        .iter()
        .filter(|c| is_reference(c) && c.error.is_none())
        .map(|c| ((c.query.clone(), c.params.clone()), c.times()))
        .collect();
    let mut changes: Vec<Option<stats::Change>> = cells
        .iter()
        .map(|c| {
            if is_reference(c) || c.error.is_some() {
                return None;
            }
            let reference = references.get(&(c.query.clone(), c.params.clone()))?;
            stats::change(&c.times(), reference)
        })
        .collect();
    stats::holm_correct(&mut changes);
    for (cell, change) in cells.iter_mut().zip(changes) {
        cell.change = change;
    }
}
