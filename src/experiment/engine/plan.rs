//! From the experiment file to the matrix: the variants selected (and the A/A control),
//! the settings axis, every query's forms with `{{vars}}` substituted and its parameter
//! sets resolved (literal, or drawn from the dataset by `params_from`); and the stages
//! the variants are measured in when their copies do not all fit the disk.

use anyhow::Result;
use postgres::{Client, SimpleQueryMessage};

use crate::db::TextParam;
use crate::error::{describe_pg_error, fail};
use crate::experiment::matrix::{
    self, CacheState, Form, Matrix, Params, Query, Role, Settings, Variant,
};
use crate::experiment::spec::{Spec, substitute, yaml_param};
use crate::target::{Target, connect};

pub fn matrix(
    target: &Target,
    spec: &Spec,
    only: &[String],
    only_caches: &[CacheState],
    control: bool,
    base: &str,
    vars: &[(String, String)],
) -> Result<Matrix> {
    let mut variants = Vec::new();
    for (i, name) in selected_variants(spec, only)?.into_iter().enumerate() {
        let sql = substitute(&spec.variant_sql(&name)?, vars, &format!("variant {name}"))?;
        let about = spec
            .variants
            .get(&name)
            .map(|v| v.about.trim().to_string())
            .unwrap_or_default();
        variants.push(Variant {
            name,
            about,
            sql,
            role: if i == 0 {
                Role::Baseline
            } else {
                Role::Candidate
            },
        });
    }
    // The control measures the noise of EXPLAIN cells; an experiment of load alone has none.
    if control
        && !spec.queries.is_empty()
        && let Some(baseline) = variants.first()
    {
        let control = Variant {
            name: matrix::CONTROL.to_string(),
            about: format!(
                "a second copy of the baseline `{}`, built and measured like every variant: its difference from the baseline is this run's noise floor",
                baseline.name
            ),
            sql: baseline.sql.clone(),
            role: Role::Control,
        };
        variants.push(control);
    }
    let settings = spec
        .settings_axis()
        .into_iter()
        .map(|(name, values)| Settings { name, values })
        .collect();
    let caches: Vec<CacheState> = spec
        .cache_axis()
        .into_iter()
        .filter(|c| only_caches.is_empty() || only_caches.contains(c))
        .collect();
    if caches.is_empty() {
        return Err(fail(
            "--cache leaves none of the experiment's cache states",
            format!(
                "the experiment measures: {}",
                spec.cache_axis()
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(Matrix::new(
        variants,
        settings,
        caches,
        resolve_queries(target, spec, base, vars)?,
    ))
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
            rows_of(client, &sql).map_err(|e| {
                fail(
                    format!(
                        "{}: params_from of query {name} failed: {}",
                        spec.path.display(),
                        describe_pg_error(&e, Some(&sql))
                    ),
                    "params_from must be a SELECT that runs on the dataset",
                )
            })?
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
            .into_iter()
            .enumerate()
            .map(|(i, values)| Params {
                label: q
                    .labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("p{}", i + 1)),
                values,
            })
            .collect();
        let forms = q
            .sql
            .forms()
            .into_iter()
            .map(|f| {
                Ok(Form {
                    name: f.name,
                    sql: substitute(f.sql.trim(), vars, name)?,
                    variants: f.variants,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Query {
            name: name.clone(),
            about: q.about.trim().to_string(),
            forms,
            params,
            rollback: q.rollback,
            prepared: q.prepared,
            verify: q
                .verify
                .as_ref()
                .map(|v| substitute(v, vars, name))
                .transpose()?,
            variants: q.variants.clone(),
            caches: spec.cache_of(q),
        });
    }
    Ok(out)
}

fn rows_of(client: &mut Client, sql: &str) -> Result<Vec<Vec<TextParam>>, postgres::Error> {
    Ok(client
        .simple_query(sql)?
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| TextParam(row.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// All candidates in one stage.
fn everything(candidates: usize) -> std::ops::Range<usize> {
    std::ops::Range {
        start: 0,
        end: candidates,
    }
}

pub use crate::experiment::databases::free_disk;

/// Variants measured together. One stage when every copy fits the free disk; else
/// stages that each hold as many candidates as fit beside the baseline and the control
/// (which stay for the whole run, so every stage is compared with the same reference).
/// `copy_bytes` is the expected size of one copy; a candidate counts twice (its cached
/// build and the copy measured on).
pub fn stages(
    variants: usize,
    kept: usize,
    copy_bytes: u64,
    free: Option<u64>,
) -> Result<Vec<std::ops::Range<usize>>> {
    // Candidates are positions kept..variants (the baseline and control are counted in `kept`).
    let candidates = variants.saturating_sub(kept);
    let Some(free) = free else {
        return Ok(vec![everything(candidates)]);
    };
    // Leave a tenth of the disk, and room for the copies' growth (variant indexes).
    let usable = free - free / 10;
    let per_copy = copy_bytes.saturating_add(copy_bytes / 2).max(1);
    let fit = (usable / per_copy) as usize;
    if fit >= kept + 2 * candidates {
        return Ok(vec![everything(candidates)]);
    }
    if fit < kept + 2 {
        return Err(fail(
            format!(
                "not enough free disk for the experiment's copies: each needs about {} MiB, {} MiB are free, and the baseline{} and one variant must exist at once",
                per_copy >> 20,
                free >> 20,
                if kept > 1 { ", its A/A control" } else { "" }
            ),
            "free disk space, run at a smaller --scale, or with `--only` one variant",
        ));
    }
    let per_stage = (fit - kept) / 2;
    Ok((0..candidates)
        .step_by(per_stage)
        .map(|start| start..(start + per_stage).min(candidates))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_fit_the_disk_and_keep_room_for_the_reference() {
        let gib = 1u64 << 30;
        // Unknown free space, or plenty: one stage with every candidate.
        assert_eq!(stages(6, 2, gib, None).unwrap(), vec![everything(4)]);
        assert_eq!(
            stages(6, 2, gib, Some(100 * gib)).unwrap(),
            vec![everything(4)]
        );
        // A candidate counts twice (its cached build and its copy). 20 GiB free, 1.5 GiB
        // per copy: 12 fit (18 GiB usable) >= 2 kept + 2 x 4 candidates.
        assert_eq!(
            stages(6, 2, gib, Some(20 * gib)).unwrap(),
            vec![everything(4)]
        );
        // 12 GiB free: 7 fit, two candidates per stage.
        assert_eq!(stages(6, 2, gib, Some(12 * gib)).unwrap(), vec![0..2, 2..4]);
        // 8 GiB free: 4 fit (7.2 GiB usable), one candidate per stage.
        assert_eq!(
            stages(6, 2, gib, Some(8 * gib)).unwrap(),
            vec![0..1, 1..2, 2..3, 3..4]
        );
        // Not even the baseline, control and one candidate.
        let err = stages(6, 2, gib, Some(5 * gib)).unwrap_err().to_string();
        assert!(err.contains("not enough free disk"), "{err}");
    }
}
