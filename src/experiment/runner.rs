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
use super::spec::{Spec, scaled_vars, substitute, yaml_param};
use crate::db::{TextParam, quote_ident, quote_literal};
use crate::error::{describe_pg_error, fail};
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

struct Query {
    info: QueryInfo,
    verify: Option<String>,
    params: Vec<Vec<TextParam>>,
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
    let settings = spec.settings_axis();
    let vars = scaled_vars(spec, scale);

    let mut admin = connect(&target.admin_config())?;
    check_can_create_databases(&mut admin)?;

    progress.set_total(spec.dataset.steps.len() as u64 + 2);
    let base = prepare_base(
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
            "dataset: reusing cached base {} (built in {:.1}s)",
            base.info.database, base.info.build_seconds
        ));
    }

    let queries = resolve_queries(target, spec, &base.info.database, &vars)?;
    let cells_per_variant: usize = queries
        .iter()
        .map(|q| q.info.forms.len() * q.params.len())
        .sum::<usize>()
        * settings.len();
    let ticks_per_cell = runs.warmup + runs.repeat + 1;
    progress.restart((variants.len() * (cells_per_variant * ticks_per_cell + 2)) as u64);

    let mut variant_results = Vec::new();
    let mut cells = Vec::new();
    let mut equivalences: HashMap<String, Vec<Equivalence>> = HashMap::new();
    for name in &variants {
        crate::interrupt::check()?;
        progress.message(&format!("{name}: building"));
        let copy = Copy::create(target, &mut admin, &base.info.database, &spec.name, name)?;
        let mut client = connect(&target.config_for(&copy.name))?;
        let mut variant = VariantResult {
            name: name.clone(),
            about: spec
                .variants
                .get(name)
                .map(|v| v.about.clone())
                .unwrap_or_default(),
            statements: Vec::new(),
            relations: Vec::new(),
            error: None,
        };
        if let Err(err) = build_variant(&mut client, spec, name, &vars, &mut variant) {
            if err.downcast_ref::<crate::error::Interrupted>().is_some() {
                return Err(err);
            }
            progress.line(&format!("variant {name} failed: {err:#}"));
            variant.error = Some(format!("{err:#}"));
            progress.tick((cells_per_variant * ticks_per_cell + 2) as u64);
            variant_results.push(variant);
            continue;
        }
        progress.tick(1);
        variant.relations = relation_sizes(&mut client)?;
        let parent_index = partition_index_parents(&mut client)?;
        progress.tick(1);

        // Reads before writes: even a rolled-back DELETE clears visibility-map bits and
        // would hand later Index Only Scans heap fetches they would not otherwise have.
        let phases =
            [false, true].map(|writes| queries.iter().filter(move |q| q.info.rollback == writes));
        for phase in phases {
            for (settings_name, values) in &settings {
                let settings_error = apply_settings(&mut client, values, runs.timeout_ms).err();
                for query in phase.clone() {
                    for (p, params) in query.params.iter().enumerate() {
                        let label = &query.info.params[p].label;
                        let mut prints = Vec::new();
                        for (form, sql) in &query.info.forms {
                            progress.message(&format!(
                                "{name} · {settings_name} · {} · {form} · {label}",
                                query.info.name
                            ));
                            let mut cell =
                                new_cell(name, settings_name, &query.info.name, form, label);
                            if let Some(err) = &settings_error {
                                cell.error = Some(format!("settings {settings_name}: {err:#}"));
                                progress.tick(ticks_per_cell as u64);
                            } else {
                                let plan = CellPlan {
                                    sql,
                                    params,
                                    rollback: query.info.rollback,
                                    warmup: runs.warmup,
                                    repeat: runs.repeat,
                                };
                                let mut ticked = 0;
                                measure(&mut client, &plan, &mut cell, &mut || {
                                    ticked += 1;
                                    progress.tick(1);
                                })?;
                                progress.tick((ticks_per_cell - ticked.min(ticks_per_cell)) as u64);
                                if let Some(plan) = &mut cell.plan {
                                    plan.index_names =
                                        name_indexes_by_parent(&plan.index_names, &parent_index);
                                }
                                if query.info.forms.len() > 1 && cell.error.is_none() {
                                    match fingerprint(
                                        &mut client,
                                        sql,
                                        params,
                                        query.verify.as_deref(),
                                    ) {
                                        Ok(print) => prints.push((form.clone(), print)),
                                        Err(err) => {
                                            prints.push((form.clone(), format!("error: {err:#}")))
                                        }
                                    }
                                }
                            }
                            cells.push(cell);
                        }
                        if prints.len() > 1 {
                            let equivalent = prints.windows(2).all(|w| w[0].1 == w[1].1);
                            equivalences
                                .entry(query.info.name.clone())
                                .or_default()
                                .push(Equivalence {
                                    variant: name.clone(),
                                    settings: settings_name.clone(),
                                    params: label.clone(),
                                    fingerprints: prints,
                                    equivalent,
                                });
                        }
                    }
                }
            }
        }
        drop(client);
        drop(copy);
        progress.line(&format!("variant {name}: done"));
        variant_results.push(variant);
    }

    compute_statistics(&mut cells, spec, &settings);
    let queries = queries
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
        runs,
        dataset: base.info,
        baseline: spec.baseline.clone(),
        settings: settings
            .into_iter()
            .map(|(name, values)| SettingsSet { name, values })
            .collect(),
        queries,
        variants: variant_results,
        cells,
    })
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
            .map(|(f, sql)| Ok((f, substitute(sql.trim(), vars, name)?)))
            .collect::<Result<Vec<_>>>()?;
        out.push(Query {
            info: QueryInfo {
                name: name.clone(),
                about: q.about.trim().to_string(),
                forms,
                params,
                rollback: q.rollback,
                equivalence: Vec::new(),
            },
            verify: q.verify.clone(),
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
                return anyhow::Error::new(crate::error::Interrupted);
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

/// Partition index name -> the partitioned index it belongs to (what the user created).
fn partition_index_parents(client: &mut Client) -> Result<HashMap<String, String>> {
    let rows = client.query(
        "SELECT c.relname::text, r.relname::text FROM pg_class c JOIN pg_class r ON r.oid = pg_partition_root(c.oid) \
         WHERE c.relkind = 'i' AND c.relispartition",
        &[],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn name_indexes_by_parent(names: &[String], parents: &HashMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| parents.get(n).unwrap_or(n).clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Session settings for a settings set, on top of pgx's measurement defaults.
fn apply_settings(client: &mut Client, values: &[(String, String)], timeout_ms: u64) -> Result<()> {
    client.batch_execute(&format!(
        "RESET ALL; SET jit = off; SET statement_timeout = {timeout_ms}"
    ))?;
    for (name, value) in values {
        client
            .batch_execute(&format!(
                "SET {} = {}",
                quote_ident(name),
                quote_literal(value)
            ))
            .map_err(|e| {
                anyhow::anyhow!("SET {name} = {value}: {}", describe_pg_error(&e, None))
            })?;
    }
    Ok(())
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
           (SELECT coalesce(sum(CASE WHEN r.relkind IN ('i', 'I') THEN pg_relation_size(pt.relid) \
                                    ELSE pg_table_size(pt.relid) END), 0)::bigint \
              FROM pg_partition_tree(r.oid) pt WHERE pt.isleaf), \
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
fn compute_statistics(
    cells: &mut [Cell],
    spec: &Spec,
    settings: &[(String, Vec<(String, String)>)],
) {
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
    let reference_settings = settings.first().map(|s| s.0.clone()).unwrap_or_default();
    let first_form: HashMap<&str, String> = spec
        .queries
        .iter()
        .map(|(name, q)| {
            (
                name.as_str(),
                q.sql
                    .forms()
                    .first()
                    .map(|f| f.0.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let references: HashMap<(String, String), Vec<f64>> = cells
        .iter()
        .filter(|c| {
            c.variant == spec.baseline
                && c.settings == reference_settings
                && first_form.get(c.query.as_str()) == Some(&c.form)
                && c.error.is_none()
        })
        .map(|c| ((c.query.clone(), c.params.clone()), c.times()))
        .collect();
    let mut changes: Vec<Option<stats::Change>> = cells
        .iter()
        .map(|c| {
            let is_reference = c.variant == spec.baseline
                && c.settings == reference_settings
                && first_form.get(c.query.as_str()) == Some(&c.form);
            if is_reference || c.error.is_some() {
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
