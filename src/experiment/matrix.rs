//! The experiment's matrix as a value: variants × settings × queries × forms × parameter
//! sets, each cell a [`CellKey`] of typed ids. The reference every cell is compared with
//! is defined here, once ([`Matrix::reference_of`]); the engine's schedule, the progress
//! total, the statistics and every report derive from this one enumeration.
//! [`resolve`] builds it from a plan once the dataset exists (`params_from` draws its
//! parameter sets from it).

use std::collections::HashMap;

use anyhow::Result;
use postgres::{Client, SimpleQueryMessage};
use serde::{Deserialize, Serialize};

use super::plan::{ParamSource, Plan};
use crate::db::TextParam;
use crate::error::{describe_pg_error, fail};

macro_rules! id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Index of a ", $what, " in the matrix.")]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        pub struct $name(pub usize);
    };
}
id!(VariantId, "variant");
id!(SettingsId, "settings set");
id!(QueryId, "query");
id!(FormId, "form of a query");
id!(ParamsId, "parameter set of a query");
id!(CacheId, "cache state");

/// What is in memory when a cell runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheState {
    /// After warmup runs: whatever the query itself keeps in memory (the default).
    Warm,
    /// Nothing of the database in shared buffers nor in the OS page cache, every run.
    Cold,
    /// Cold, then `pg_prewarm` of the experiment's `prewarm:` relations.
    Prewarmed,
}

impl CacheState {
    pub fn name(self) -> &'static str {
        match self {
            CacheState::Warm => "warm",
            CacheState::Cold => "cold",
            CacheState::Prewarmed => "prewarmed",
        }
    }

    pub fn parse(text: &str) -> Option<CacheState> {
        match text {
            "warm" => Some(CacheState::Warm),
            "cold" => Some(CacheState::Cold),
            "prewarmed" => Some(CacheState::Prewarmed),
            _ => None,
        }
    }
}

/// One cell: what is measured, by ids into the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub variant: VariantId,
    pub settings: SettingsId,
    pub cache: CacheId,
    pub query: QueryId,
    pub form: FormId,
    pub params: ParamsId,
}

/// What a variant is for in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// What every other variant is compared with.
    Baseline,
    /// A second copy of the baseline, built and measured like any variant: its
    /// difference from the baseline is the run's own noise floor (the A/A control).
    Control,
    Candidate,
}

/// Name the A/A control goes by; variant names in experiment files cannot contain a
/// space, so it never collides with one.
pub const CONTROL: &str = "A/A control";

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub about: String,
    /// The variant's SQL with `{{vars}}` substituted (the control has the baseline's).
    pub sql: String,
    pub role: Role,
    /// `server_settings`: in force (ALTER SYSTEM + reload) while its load runs.
    pub server_settings: Vec<(String, String)>,
    /// One of them needs a restart (checked against the server once, before the run).
    pub server_settings_restart: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub values: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Form {
    pub name: String,
    pub sql: String,
    /// Empty: every variant.
    pub variants: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Params {
    pub label: String,
    pub values: Vec<TextParam>,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub name: String,
    pub about: String,
    pub forms: Vec<Form>,
    pub params: Vec<Params>,
    /// DML: every run inside BEGIN ... ROLLBACK.
    pub rollback: bool,
    pub prepared: bool,
    pub verify: Option<String>,
    /// Empty: every variant.
    pub variants: Vec<String>,
    /// Cache states this query is measured in (a subset of the matrix's axis).
    pub caches: Vec<CacheState>,
    /// Execution must stay under this (ms), at the seed's scale.
    pub target_ms: Option<f64>,
}

impl Query {
    /// Does `form` of this query run in the variant called `name`? The control runs
    /// wherever the baseline does.
    fn runs(&self, form: &Form, name: &str) -> bool {
        let listed = |names: &[String]| names.is_empty() || names.iter().any(|v| v == name);
        listed(&self.variants) && listed(&form.variants)
    }
}

#[derive(Debug, Clone)]
pub struct Matrix {
    /// Baseline first, then the candidates in file order, then the control (if any).
    pub variants: Vec<Variant>,
    /// The first set is the reference.
    pub settings: Vec<Settings>,
    /// The cache-state axis; the first is the reference (warm unless only others).
    pub caches: Vec<CacheState>,
    pub queries: Vec<Query>,
    /// Every cell, in report order: variant, settings, cache, query, parameter set, form.
    pub cells: Vec<CellKey>,
    index: HashMap<CellKey, usize>,
}

pub const BASELINE: VariantId = VariantId(0);
pub const REFERENCE_SETTINGS: SettingsId = SettingsId(0);
pub const FIRST_FORM: FormId = FormId(0);

impl Matrix {
    /// `variants` must start with the baseline.
    pub fn new(
        variants: Vec<Variant>,
        settings: Vec<Settings>,
        caches: Vec<CacheState>,
        queries: Vec<Query>,
    ) -> Matrix {
        let baseline_name = variants.first().map(|v| v.name.clone()).unwrap_or_default();
        let mut cells = Vec::new();
        for (v, variant) in variants.iter().enumerate() {
            // Restrictions name experiment variants; the control follows the baseline.
            let as_name = if variant.role == Role::Control {
                &baseline_name
            } else {
                &variant.name
            };
            for s in 0..settings.len() {
                for (c, cache) in caches.iter().enumerate() {
                    for (q, query) in queries.iter().enumerate() {
                        if !query.caches.contains(cache) {
                            continue;
                        }
                        for p in 0..query.params.len() {
                            for (f, form) in query.forms.iter().enumerate() {
                                if query.runs(form, as_name) {
                                    cells.push(CellKey {
                                        variant: VariantId(v),
                                        settings: SettingsId(s),
                                        cache: CacheId(c),
                                        query: QueryId(q),
                                        form: FormId(f),
                                        params: ParamsId(p),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        let index = cells.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        Matrix {
            variants,
            settings,
            caches,
            queries,
            cells,
            index,
        }
    }

    pub fn variant(&self, id: VariantId) -> &Variant {
        &self.variants[id.0]
    }
    pub fn query(&self, id: QueryId) -> &Query {
        &self.queries[id.0]
    }
    pub fn form(&self, key: &CellKey) -> &Form {
        &self.queries[key.query.0].forms[key.form.0]
    }
    pub fn params(&self, key: &CellKey) -> &Params {
        &self.queries[key.query.0].params[key.params.0]
    }
    pub fn cache(&self, key: &CellKey) -> CacheState {
        self.caches[key.cache.0]
    }

    /// Position of a cell in [`Matrix::cells`].
    pub fn position(&self, key: &CellKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    pub fn control(&self) -> Option<VariantId> {
        self.variants
            .iter()
            .position(|v| v.role == Role::Control)
            .map(VariantId)
    }

    /// How many comparisons a report makes (and Holm corrects together): every cell
    /// but the control's that has a reference cell.
    pub fn comparisons(&self) -> usize {
        self.cells
            .iter()
            .filter(|k| self.variant(k.variant).role != Role::Control)
            .filter(|k| {
                self.reference_of(k)
                    .and_then(|r| self.position(&r))
                    .is_some()
            })
            .count()
    }

    /// The cell `key` is compared with, if it is not a reference itself and that cell
    /// exists: the baseline variant under the reference settings in the first form,
    /// same query, parameters and cache state (a cold cell is compared with a cold one).
    /// The control is compared with the baseline under its own settings and form, so
    /// that it measures nothing but the copy.
    pub fn reference_of(&self, key: &CellKey) -> Option<CellKey> {
        let reference = match self.variant(key.variant).role {
            Role::Control => CellKey {
                variant: BASELINE,
                ..*key
            },
            Role::Baseline if key.settings == REFERENCE_SETTINGS && key.form == FIRST_FORM => {
                return None;
            }
            Role::Baseline | Role::Candidate => CellKey {
                variant: BASELINE,
                settings: REFERENCE_SETTINGS,
                form: FIRST_FORM,
                ..*key
            },
        };
        self.index.contains_key(&reference).then_some(reference)
    }

    /// Cells of one variant.
    pub fn cells_of(&self, variant: VariantId) -> impl Iterator<Item = usize> + '_ {
        self.cells
            .iter()
            .enumerate()
            .filter(move |(_, k)| k.variant == variant)
            .map(|(i, _)| i)
    }

    /// Cells of a query's parameter set, in report order.
    pub fn cells_for(&self, query: QueryId, params: ParamsId) -> impl Iterator<Item = usize> + '_ {
        self.cells
            .iter()
            .enumerate()
            .filter(move |(_, k)| k.query == query && k.params == params)
            .map(|(i, _)| i)
    }
}

/// The plan's matrix, with every query's parameter sets: literal ones as they are,
/// `params_from` ones drawn from the dataset (`base`: a connection to it). Distinct
/// `params_from` queries run once each, as many at once as the machine has cores (at
/// scale 1 each aggregates 20M rows for seconds).
pub fn resolve(plan: &Plan, base: &postgres::Config) -> Result<Matrix> {
    let mut distinct: Vec<&str> = Vec::new();
    for planned in &plan.queries {
        if let ParamSource::From(sql) = &planned.params
            && !distinct.contains(&sql.as_str())
        {
            distinct.push(sql);
        }
    }
    let drawn = draw_all(&distinct, base);
    let mut queries = Vec::new();
    for planned in &plan.queries {
        let name = &planned.query.name;
        let sets = match &planned.params {
            ParamSource::Literal(sets) => sets.clone(),
            ParamSource::From(sql) => {
                let i = distinct.iter().position(|d| d == sql).unwrap_or(0);
                match &drawn[i] {
                    Ok(rows) => rows.clone(),
                    Err(e) => {
                        return Err(fail(
                            format!(
                                "{}: params_from of query {name} failed: {e}",
                                plan.path.display(),
                            ),
                            "params_from must be a SELECT that runs on the dataset",
                        ));
                    }
                }
            }
        };
        if sets.is_empty() {
            return Err(fail(
                format!(
                    "{}: params_from of query {name} returned no rows",
                    plan.path.display()
                ),
                "the dataset has no rows matching it; check the query or the scale",
            ));
        }
        if sets.len() > plan.limits.max_params {
            let cells = sets.len() * planned.query.forms.len() * plan.variants.len();
            return Err(fail(
                format!(
                    "{}: params_from of query {name} returned {} parameter sets, more than runs.max_params ({}): each set is a cell of every variant and form ({cells} cells), measured in every round",
                    plan.path.display(),
                    sets.len(),
                    plan.limits.max_params
                ),
                "draw a sample (ORDER BY ... LIMIT n in params_from), or raise runs.max_params if you mean it",
            ));
        }
        let mut query = planned.query.clone();
        query.params = sets
            .into_iter()
            .enumerate()
            .map(|(i, values)| Params {
                label: planned
                    .labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("p{}", i + 1)),
                values,
            })
            .collect();
        queries.push(query);
    }
    Ok(Matrix::new(
        plan.variants.clone(),
        plan.settings.clone(),
        plan.caches.clone(),
        queries,
    ))
}

/// A `params_from` query's rows, or the server's message.
type Drawn = Result<Vec<Vec<TextParam>>, String>;

/// Every query's rows (or the server's message), each on a connection of its own, as
/// many at once as the machine has cores; in the given order.
fn draw_all(queries: &[&str], base: &postgres::Config) -> Vec<Drawn> {
    let next = std::sync::Mutex::new(0usize);
    let out: std::sync::Mutex<Vec<Option<Drawn>>> =
        std::sync::Mutex::new(queries.iter().map(|_| None).collect());
    let workers = crate::host::cores().clamp(1, queries.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut client: Option<Client> = None;
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(sql) = queries.get(i) else { break };
                    let rows = match &mut client {
                        Some(c) => Ok(c),
                        None => crate::target::connect(base)
                            .map(|c| client.insert(c))
                            .map_err(|e| format!("{e:#}")),
                    }
                    .and_then(|c| rows_of(c, sql).map_err(|e| describe_pg_error(&e, Some(sql))));
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(rows);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
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

/// When the cells are measured: `rounds` rounds, each visiting every cell once in a
/// seeded random order for a block of `block` runs, after a warmup round. Cells whose
/// settings are applied to the whole server form groups (one ALTER SYSTEM per group
/// visit); the groups are visited in random order too, within each round.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Schedule {
    pub seed: u64,
    pub rounds: usize,
    pub block: usize,
    pub warmup: usize,
}

impl Schedule {
    /// `repeat` runs per cell spread over `rounds` rounds (at least one run per round).
    pub fn new(seed: u64, repeat: usize, rounds: usize, warmup: usize) -> Schedule {
        let rounds = rounds.clamp(1, repeat.max(1));
        Schedule {
            seed,
            rounds,
            block: repeat.max(1).div_ceil(rounds),
            warmup,
        }
    }

    /// The visiting order of one round: the groups in random order, the cells of each
    /// group in random order. `groups` lists cell positions per group; `salt`
    /// distinguishes rounds and phases, so every round gets its own order.
    pub fn order(&self, salt: u64, groups: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let mut rng = fastrand::Rng::with_seed(
            self.seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(salt),
        );
        let mut groups: Vec<Vec<usize>> =
            groups.iter().filter(|g| !g.is_empty()).cloned().collect();
        rng.shuffle(&mut groups);
        for group in &mut groups {
            rng.shuffle(group);
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str, role: Role) -> Variant {
        Variant {
            name: name.into(),
            about: String::new(),
            sql: String::new(),
            role,
            server_settings: Vec::new(),
            server_settings_restart: false,
        }
    }

    fn query(name: &str, forms: &[(&str, &[&str])], params: usize) -> Query {
        Query {
            name: name.into(),
            about: String::new(),
            forms: forms
                .iter()
                .map(|(f, only)| Form {
                    name: (*f).into(),
                    sql: "SELECT 1".into(),
                    variants: only.iter().map(|v| v.to_string()).collect(),
                })
                .collect(),
            params: (0..params)
                .map(|i| Params {
                    label: format!("p{}", i + 1),
                    values: Vec::new(),
                })
                .collect(),
            rollback: false,
            prepared: false,
            verify: None,
            variants: Vec::new(),
            caches: vec![CacheState::Warm],
            target_ms: None,
        }
    }

    fn matrix() -> Matrix {
        let settings = ["default", "ssd"]
            .map(|n| Settings {
                name: n.into(),
                values: Vec::new(),
            })
            .to_vec();
        Matrix::new(
            vec![
                variant("current", Role::Baseline),
                variant("covering", Role::Candidate),
                variant("array", Role::Candidate),
                variant(CONTROL, Role::Control),
            ],
            settings,
            vec![CacheState::Warm],
            vec![
                query("lookup", &[("sql", &[])], 2),
                query("page", &[("exists", &[]), ("array", &["array"])], 1),
            ],
        )
    }

    #[test]
    fn cells_follow_the_restrictions_and_the_control_follows_the_baseline() {
        let m = matrix();
        // Per variant and settings: lookup 2 + page 1 (+1 array form in `array`).
        assert_eq!(m.cells.len(), 4 * 2 * 3 + 2);
        let array_form = m
            .cells
            .iter()
            .filter(|k| k.query == QueryId(1) && k.form == FormId(1))
            .count();
        assert_eq!(array_form, 2, "only the array variant, in both settings");
        assert_eq!(m.control(), Some(VariantId(3)));
        assert_eq!(
            m.cells_of(VariantId(3)).count(),
            m.cells_of(BASELINE).count()
        );
    }

    #[test]
    fn every_cell_has_one_reference_defined_here() {
        let m = matrix();
        let key = |v, s, q, f, p| CellKey {
            variant: VariantId(v),
            settings: SettingsId(s),
            cache: CacheId(0),
            query: QueryId(q),
            form: FormId(f),
            params: ParamsId(p),
        };
        // The references themselves.
        assert_eq!(m.reference_of(&key(0, 0, 0, 0, 1)), None);
        // Another variant, other settings: baseline, reference settings, same params.
        assert_eq!(
            m.reference_of(&key(1, 1, 0, 0, 1)),
            Some(key(0, 0, 0, 0, 1))
        );
        // The baseline under other settings is compared with itself under the reference.
        assert_eq!(
            m.reference_of(&key(0, 1, 0, 0, 0)),
            Some(key(0, 0, 0, 0, 0))
        );
        // Another form: the first form of the baseline.
        assert_eq!(
            m.reference_of(&key(2, 0, 1, 1, 0)),
            Some(key(0, 0, 1, 0, 0))
        );
        // The control: the baseline under the same settings and form.
        assert_eq!(
            m.reference_of(&key(3, 1, 0, 0, 0)),
            Some(key(0, 1, 0, 0, 0))
        );
        // Every non-reference cell's reference is a cell of the matrix.
        for k in &m.cells {
            if let Some(r) = m.reference_of(k) {
                assert!(m.position(&r).is_some());
            }
        }
    }

    #[test]
    fn a_schedule_spreads_repetitions_and_orders_each_round_its_own_way() {
        let s = Schedule::new(7, 20, 5, 2);
        assert_eq!((s.rounds, s.block), (5, 4));
        assert_eq!(
            Schedule::new(7, 3, 10, 2).rounds,
            3,
            "no more rounds than runs"
        );
        assert_eq!(Schedule::new(7, 21, 5, 2).block, 5, "rounded up");
        let groups = vec![(0..10).collect::<Vec<_>>(), vec![10, 11], vec![]];
        let a = s.order(1, &groups);
        assert_eq!(a, s.order(1, &groups), "the seed reproduces the order");
        assert_ne!(a, s.order(2, &groups), "another round, another order");
        assert_eq!(a.len(), 2, "empty groups are dropped");
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..12).collect::<Vec<_>>(), "every cell once");
    }
}
