//! Experiment files (`experiments/<name>.yaml`): what they may say, and checking it with
//! errors that point at the file, line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::fail;
pub use crate::values::{
    MAX_DURATION, MAX_TIMEOUT, duration_from_text, parse_duration, substitute, timeout_from_text,
    yaml_param, yaml_scalar,
};

/// What server an experiment needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// pgx's experiment settings on its own server (no fsync, minimal WAL): reads and
    /// plans as production, writes faster than any durable server.
    #[default]
    Experiment,
    /// Production durability; on pgx's own server a cluster started with it.
    Durable,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub about: String,
    /// Which investigation in shared/seeds this reproduces.
    #[serde(default)]
    pub seed: String,
    #[serde(default)]
    pub schema: SchemaSpec,
    pub dataset: DatasetSpec,
    pub baseline: String,
    pub variants: IndexMap<String, VariantSpec>,
    /// Optional axis of session settings (GUCs); the first entry is the reference.
    #[serde(default)]
    pub settings: IndexMap<String, IndexMap<String, serde_json::Value>>,
    #[serde(default)]
    pub queries: IndexMap<String, QuerySpec>,
    /// Cache states every query is measured in: warm (default), cold, prewarmed; the
    /// first is the reference.
    #[serde(default)]
    pub cache: Vec<String>,
    /// Relations `pg_prewarm` loads before a `prewarmed` cell.
    #[serde(default)]
    pub prewarm: Vec<String>,
    #[serde(default)]
    pub runs: RunsSpec,
    /// DML run on every variant's copy before measurement (bloat, HOT updates).
    pub workload: Option<WorkloadSpec>,
    /// Tables whose HOT updates, dead tuples, bloat and sizes are reported per variant.
    #[serde(default)]
    pub table_stats: Vec<String>,
    /// After measurement, time VACUUM and VACUUM FULL of the `table_stats` tables.
    #[serde(default)]
    pub maintenance: bool,
    /// Concurrent load (TPS, latency percentiles) run on every variant after the
    /// EXPLAIN measurements.
    pub load: Option<crate::loadtest::LoadSpec>,
    /// Screen the variants with HypoPG (hypothetical indexes, plain EXPLAIN) before
    /// building them, as `--screen` does.
    #[serde(default)]
    pub screen: bool,
    /// `durable` when the question is the write path (WAL, checkpoints, commit latency):
    /// the run needs fsync, full_page_writes and a WAL level a replica could follow.
    #[serde(default)]
    pub server: ServerKind,
    /// Directory of the YAML file, for relative `file:` paths.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The file's text, for locating semantic errors and for the cache key.
    #[serde(skip)]
    pub source: String,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    #[serde(default = "default_migrations")]
    pub migrations: PathBuf,
    pub up_to: Option<i32>,
}

impl Default for SchemaSpec {
    fn default() -> Self {
        SchemaSpec {
            migrations: default_migrations(),
            up_to: None,
        }
    }
}

fn default_migrations() -> PathBuf {
    PathBuf::from("migrations")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Default scale; 1 is the seed's production size (and the only one of a copied
    /// database).
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Sizes at scale 1; `{{name}}` becomes max(1, round(value × scale)).
    #[serde(default)]
    pub vars: IndexMap<String, f64>,
    /// SQL that builds the dataset (after the migrations); or, instead, a copy of an
    /// existing database (`from_database`, `from_url`).
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// A database on the same server, copied as it is (`CREATE DATABASE ... TEMPLATE`):
    /// real rows instead of generated ones. Its schema comes with it (no migrations).
    #[serde(default)]
    pub from_database: Option<String>,
    /// A database on another server, copied with `pg_dump` / `pg_restore` (parallel jobs).
    #[serde(default)]
    pub from_url: Option<String>,
    /// The bulk-load path (default): the migrations' indexes and foreign keys are dropped
    /// before the steps and rebuilt after them, parallel steps stream through COPY.
    /// `false` runs the steps as written with every index in place (the same rows).
    #[serde(default = "default_bulk")]
    pub bulk: bool,
}

fn default_bulk() -> bool {
    true
}

fn default_scale() -> f64 {
    1.0
}

/// Where a base's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Migrations, then the dataset's steps.
    Steps,
    Database(String),
    Url(String),
}

impl DatasetSpec {
    pub fn source(&self) -> Source {
        match (&self.from_database, &self.from_url) {
            (Some(name), _) => Source::Database(name.clone()),
            (None, Some(url)) => Source::Url(url.clone()),
            (None, None) => Source::Steps,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    pub sql: String,
    /// The step may be split into chunks run over several connections: `parallel: true`
    /// or `parallel: { range: [1, "{{documents}}"], chunks: 16 }`.
    #[serde(default)]
    pub parallel: Option<ParallelSpec>,
}

/// `parallel: true` or its options.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ParallelSpec {
    Flag(bool),
    Options(ParallelOptions),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelOptions {
    /// The values `{{lo}}`..`{{hi}}` split into chunks, e.g. `[1, "{{documents}}"]`.
    pub range: Option<[RangeBound; 2]>,
    /// How many chunks (default 16). Fixed, so the chunks' bounds, and with them the rows,
    /// do not depend on how many connections run them.
    pub chunks: Option<u32>,
}

/// A bound of `parallel.range`: a number or a text with `{{vars}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RangeBound {
    Number(i64),
    Text(String),
}

impl StepSpec {
    /// The step's parallel options; `None` for a step run as one statement list.
    pub fn parallel(&self) -> Option<ParallelOptions> {
        match &self.parallel {
            None | Some(ParallelSpec::Flag(false)) => None,
            Some(ParallelSpec::Flag(true)) => Some(ParallelOptions::default()),
            Some(ParallelSpec::Options(options)) => Some(options.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    #[serde(default)]
    pub about: String,
    pub sql: Option<String>,
    pub file: Option<PathBuf>,
    /// Settings the server reads on reload (`max_wal_size`, `checkpoint_timeout`, ...),
    /// in force while this variant's load runs: ALTER SYSTEM + reload on a cluster pgx
    /// owns, undone after.
    #[serde(default)]
    pub server_settings: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    #[serde(default)]
    pub about: String,
    /// One SQL text, or several named forms of the same intent compared side by side.
    pub sql: QuerySql,
    /// Literal parameter sets, bound to $1..$n.
    pub params: Option<Vec<Vec<serde_json::Value>>>,
    /// A SELECT run once on the dataset; each row is a parameter set.
    pub params_from: Option<String>,
    /// Labels for the parameter sets (default p1, p2, ...).
    #[serde(default)]
    pub labels: Vec<String>,
    /// DML: run inside BEGIN ... ROLLBACK so every run sees the same data.
    #[serde(default)]
    pub rollback: bool,
    /// Measure this query only in these variants (default: all).
    #[serde(default)]
    pub variants: Vec<String>,
    /// PREPARE once per cell and EXPLAIN EXECUTE it, so `plan_cache_mode` (custom vs
    /// generic plans) applies as it does for an application's prepared statements.
    #[serde(default)]
    pub prepared: bool,
    /// With several forms: SQL run after each form (inside its transaction) whose result
    /// must be the same for every form, e.g. a fingerprint of the rows a DELETE left.
    pub verify: Option<String>,
    /// Cache states this query is measured in (default: the experiment's `cache:` axis).
    #[serde(default)]
    pub cache: Option<Vec<String>>,
    /// The seed's target for this query: execution under this duration ("3s"), judged at
    /// the seed's production scale (1); the report's answer says met, not met, or not
    /// evaluated at this scale.
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Debug, Clone)]
pub enum QuerySql {
    One(String),
    Forms(IndexMap<String, FormSpec>),
}

/// One form of a query: its SQL, optionally only for some variants (e.g. a form that
/// reads a column only one variant adds).
#[derive(Debug, Clone)]
pub enum FormSpec {
    Sql(String),
    Restricted { sql: String, variants: Vec<String> },
}

/// `sql:` is a string, or a map of named forms; read by hand (not `untagged`) so a
/// mistake is named ("unknown key `sqll` in form x; allowed: sql, variants") instead of
/// serde's "data did not match any variant".
impl<'de> Deserialize<'de> for QuerySql {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = QuerySql;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an SQL text, or a map of named forms (name: SQL text, or name: {sql, variants})")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<QuerySql, E> {
                Ok(QuerySql::One(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<QuerySql, A::Error> {
                let mut forms = IndexMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let form = map.next_value_seed(FormSeed(&name))?;
                    forms.insert(name, form);
                }
                Ok(QuerySql::Forms(forms))
            }
        }
        d.deserialize_any(V)
    }
}

/// One form, knowing its name for the error message.
struct FormSeed<'a>(&'a str);

/// Keys a form given as a map may have.
pub const FORM_KEYS: &[&str] = &["sql", "variants"];

impl<'de> serde::de::DeserializeSeed<'de> for FormSeed<'_> {
    type Value = FormSpec;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<FormSpec, D::Error> {
        struct V<'a>(&'a str);
        impl<'de> serde::de::Visitor<'de> for V<'_> {
            type Value = FormSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(
                    f,
                    "form {}: an SQL text, or a map with sql (and variants)",
                    self.0
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FormSpec, E> {
                Ok(FormSpec::Sql(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FormSpec, A::Error> {
                use serde::de::Error as _;
                let mut sql = None;
                let mut variants = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "sql" => sql = Some(map.next_value::<String>()?),
                        "variants" => variants = map.next_value::<Vec<String>>()?,
                        other => {
                            return Err(A::Error::custom(format!(
                                "unknown key `{other}` in form {}; allowed keys: {}",
                                self.0,
                                FORM_KEYS.join(", ")
                            )));
                        }
                    }
                }
                let sql =
                    sql.ok_or_else(|| A::Error::custom(format!("form {} has no `sql`", self.0)))?;
                Ok(FormSpec::Restricted { sql, variants })
            }
        }
        d.deserialize_any(V(self.0))
    }
}

#[derive(Debug, Clone)]
pub struct Form {
    pub name: String,
    pub sql: String,
    /// Empty: every variant.
    pub variants: Vec<String>,
}

impl Form {
    pub fn runs_in(&self, variant: &str) -> bool {
        self.variants.is_empty() || self.variants.iter().any(|v| v == variant)
    }
}

impl QuerySql {
    /// The forms in file order; a single SQL text is the form "sql".
    pub fn forms(&self) -> Vec<Form> {
        match self {
            QuerySql::One(sql) => vec![Form {
                name: "sql".into(),
                sql: sql.clone(),
                variants: Vec::new(),
            }],
            QuerySql::Forms(forms) => forms
                .iter()
                .map(|(name, form)| match form {
                    FormSpec::Sql(sql) => Form {
                        name: name.clone(),
                        sql: sql.clone(),
                        variants: Vec::new(),
                    },
                    FormSpec::Restricted { sql, variants } => Form {
                        name: name.clone(),
                        sql: sql.clone(),
                        variants: variants.clone(),
                    },
                })
                .collect(),
        }
    }
}

impl QuerySpec {
    pub fn runs_in(&self, variant: &str) -> bool {
        self.variants.is_empty() || self.variants.iter().any(|v| v == variant)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(default)]
    pub about: String,
    /// How many times the script runs; each batch is its own transaction.
    pub batches: usize,
    /// `setseed()` before the first batch, so `random()` draws the same rows every time.
    #[serde(default = "default_seed")]
    pub seed: f64,
    pub sql: String,
}

fn default_seed() -> f64 {
    0.42
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsSpec {
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    #[serde(default = "default_repeat")]
    pub repeat: usize,
    /// Per-statement timeout, e.g. "30s", "500ms", "2min".
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Rounds the measured runs of every cell are spread over; each round visits every
    /// cell once in a seeded random order (default 20, at most `repeat`).
    #[serde(default)]
    pub rounds: Option<usize>,
    /// Seed of the rounds' order; a fresh one each run when absent (the report says
    /// which, so a run can be reproduced with `--seed`).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Measure an A/A control, a second copy of the baseline, whose difference from the
    /// baseline is the run's noise floor (default true).
    #[serde(default = "default_control")]
    pub control: bool,
    /// Time a cell may spend in its rounds, e.g. "30s", each fresh backend's unrecorded
    /// first run included: once a cell or its reference has spent it (and `min` rounds
    /// have run), its comparison stops, decided or not. Absent: a comparison runs until
    /// it is decided or `rounds` are done.
    #[serde(default)]
    pub budget: Option<String>,
    /// With a budget: the rounds every timed cell gets regardless (default: the first
    /// round after which a comparison can be decided, 3).
    #[serde(default)]
    pub min: Option<usize>,
    /// Time cells whose plan, blocks and rows equal their reference's too (default
    /// false: such a cell does the same work as its reference, and is reported as
    /// *same plan, same blocks, same rows: not timed*).
    #[serde(default)]
    pub time_identical: bool,
    /// Variants that only add indexes (or statistics) and drop existing ones share one
    /// copy, each measured with the others' objects hidden (default true; false gives
    /// every variant a copy of its own, as `--separate-copies` does).
    #[serde(default = "default_share")]
    pub share: bool,
    /// The most parameter sets a `params_from` may return (default 100): each is a cell
    /// of every variant, measured in every round.
    #[serde(default)]
    pub max_params: Option<usize>,
}

impl Default for RunsSpec {
    fn default() -> Self {
        RunsSpec {
            warmup: default_warmup(),
            repeat: default_repeat(),
            timeout: default_timeout(),
            rounds: None,
            seed: None,
            control: default_control(),
            budget: None,
            min: None,
            time_identical: false,
            share: default_share(),
            max_params: None,
        }
    }
}

fn default_control() -> bool {
    true
}

fn default_share() -> bool {
    true
}

fn default_warmup() -> usize {
    1
}
fn default_repeat() -> usize {
    20
}
fn default_timeout() -> String {
    "30s".into()
}

/// `experiments/NAME.yaml` for a bare name, else the path as given.
pub fn resolve_path(name_or_path: &str) -> PathBuf {
    let as_path = Path::new(name_or_path);
    if name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml") || as_path.is_file() {
        return as_path.to_path_buf();
    }
    crate::project_root()
        .join("experiments")
        .join(format!("{name_or_path}.yaml"))
}

pub fn read(path: &Path) -> Result<Spec> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        let known = list_experiments();
        fail(
            format!("cannot read experiment file {}: {e}", path.display()),
            if known.is_empty() {
                "give the name of a file in experiments/ or a path to a YAML file".to_string()
            } else {
                format!("known experiments: {}", known.join(", "))
            },
        )
    })?;
    parse(path, &source)
}

pub fn parse(path: &Path, source: &str) -> Result<Spec> {
    let mut spec: Spec = crate::yaml::from_str(path, source).map_err(|message| {
        fail(
            message,
            "see the experiment file format in docs/experiments.md (section \"Experiment files\")",
        )
    })?;
    spec.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    spec.source = source.to_string();
    spec.path = path.to_path_buf();
    spec.validate()?;
    Ok(spec)
}

fn list_experiments() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate::project_root().join("experiments"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

impl Spec {
    /// A semantic error located at a key of the file: `path` names it from the root
    /// (`["queries", "q", "variants", "1"]`); the deepest part that exists is used.
    fn error_at(&self, path: &[&str], message: String, hint: &str) -> anyhow::Error {
        let at = match crate::yaml::Locator::new(&self.source).find(path) {
            Some((line, column)) => format!("{}:{line}:{column}", self.path.display()),
            None => self.path.display().to_string(),
        };
        fail(format!("{at}: {message}"), hint)
    }

    /// The cache-state axis: the experiment's `cache:` list, warm when absent.
    pub fn cache_axis(&self) -> Vec<crate::experiment::matrix::CacheState> {
        use crate::experiment::matrix::CacheState;
        let states: Vec<CacheState> = self
            .cache
            .iter()
            .filter_map(|c| CacheState::parse(c))
            .collect();
        if states.is_empty() {
            vec![CacheState::Warm]
        } else {
            states
        }
    }

    /// The cache states one query is measured in.
    pub fn cache_of(&self, query: &QuerySpec) -> Vec<crate::experiment::matrix::CacheState> {
        use crate::experiment::matrix::CacheState;
        match &query.cache {
            Some(list) => list.iter().filter_map(|c| CacheState::parse(c)).collect(),
            None => self.cache_axis(),
        }
    }

    fn validate_cache(&self) -> Result<()> {
        use crate::experiment::matrix::CacheState;
        let known = "warm, cold, prewarmed";
        for (i, state) in self.cache.iter().enumerate() {
            if CacheState::parse(state).is_none() {
                return Err(self.error_at(
                    &["cache", &i.to_string()],
                    format!("unknown cache state {state:?}"),
                    &format!("cache states are: {known}"),
                ));
            }
        }
        let axis = self.cache_axis();
        for (name, query) in &self.queries {
            for (i, state) in query.cache.iter().flatten().enumerate() {
                let Some(parsed) = CacheState::parse(state) else {
                    return Err(self.error_at(
                        &["queries", name, "cache", &i.to_string()],
                        format!("unknown cache state {state:?} in query {name}"),
                        &format!("cache states are: {known}"),
                    ));
                };
                if !axis.contains(&parsed) {
                    return Err(self.error_at(
                        &["queries", name, "cache", &i.to_string()],
                        format!("query {name} asks for cache state {state}, which the experiment's cache: list does not have"),
                        "add it to the top-level cache: list",
                    ));
                }
            }
        }
        if axis.contains(&CacheState::Prewarmed) && self.prewarm.is_empty() {
            return Err(self.error_at(
                &["cache"],
                "the prewarmed cache state needs the relations to prewarm".into(),
                "list them under prewarm:, e.g. prewarm: [records.records, records.records_name_trgm]",
            ));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !name_ok(&self.name) {
            return Err(self.error_at(
                &["name"],
                format!(
                    "experiment name {:?} may use only a-z, 0-9, - and _",
                    self.name
                ),
                "rename it, e.g. index-strategies",
            ));
        }
        let sections = [
            ("variants", self.variants.keys().collect::<Vec<_>>()),
            ("queries", self.queries.keys().collect()),
            ("settings", self.settings.keys().collect()),
        ];
        for (section, name) in sections
            .iter()
            .flat_map(|(section, names)| names.iter().map(move |n| (*section, n.as_str())))
        {
            if !name_ok(name) {
                return Err(self.error_at(
                    &[section, name],
                    format!("name {name:?} may use only a-z, 0-9, - and _"),
                    "rename it",
                ));
            }
        }
        if !self.variants.contains_key(&self.baseline) {
            return Err(self.error_at(
                &["baseline"],
                format!("baseline {:?} is not one of the variants", self.baseline),
                &format!(
                    "set baseline to one of: {}",
                    self.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let sources = usize::from(!self.dataset.steps.is_empty())
            + usize::from(self.dataset.from_database.is_some())
            + usize::from(self.dataset.from_url.is_some());
        if sources != 1 {
            return Err(self.error_at(
                &["dataset"],
                if sources == 0 {
                    "the dataset has no steps and no source database".into()
                } else {
                    "the dataset has more than one of steps, from_database and from_url".into()
                },
                "give SQL steps that build the rows, or from_database: NAME (same server), or from_url: postgresql://... (another server)",
            ));
        }
        if let Err(err) = check_scale(self, self.dataset.scale, "dataset.scale") {
            return Err(self.error_at(
                &["dataset", "scale"],
                err.to_string(),
                &crate::error::hint_of(&err).unwrap_or_default(),
            ));
        }
        if let Some(load) = &self.load {
            load.limits().map_err(|e| {
                self.error_at(&["load"], format!("load: {e:#}"), "see docs/loads.md")
            })?;
        }
        if self.queries.is_empty() && self.load.is_none() {
            return Err(self.error_at(
                &["queries"],
                "no queries to measure".into(),
                "add at least one entry under queries:",
            ));
        }
        for (name, variant) in &self.variants {
            if variant.sql.is_some() && variant.file.is_some() {
                return Err(self.error_at(
                    &["variants", name, "file"],
                    format!("variant {name} has both sql and file"),
                    "keep one of them",
                ));
            }
        }
        for (name, query) in &self.queries {
            if let Some(target) = &query.target
                && parse_duration(target).is_none_or(|d| d.is_zero())
            {
                return Err(self.error_at(
                    &["queries", name, "target"],
                    format!("query {name}: target {target:?} is not a duration above zero"),
                    "write it like 3s or 500ms: the execution time the query must stay under",
                ));
            }
            if query.params.is_some() && query.params_from.is_some() {
                return Err(self.error_at(
                    &["queries", name, "params_from"],
                    format!("query {name} has both params and params_from"),
                    "keep one of them",
                ));
            }
            let forms = query.sql.forms();
            // Where each variant name is written: the query's own list, or a form's.
            let named: Vec<(Vec<String>, &String)> = query
                .variants
                .iter()
                .enumerate()
                .map(|(i, v)| (vec!["variants".to_string(), i.to_string()], v))
                .chain(forms.iter().flat_map(|f| {
                    f.variants.iter().enumerate().map(move |(i, v)| {
                        (
                            vec![
                                "sql".into(),
                                f.name.clone(),
                                "variants".into(),
                                i.to_string(),
                            ],
                            v,
                        )
                    })
                }))
                .collect();
            if let Some((at, unknown)) = named.iter().find(|(_, v)| !self.variants.contains_key(*v))
            {
                let mut path = vec!["queries", name.as_str()];
                path.extend(at.iter().map(String::as_str));
                return Err(self.error_at(
                    &path,
                    format!("query {name} names an unknown variant {unknown:?}"),
                    &format!(
                        "variants are: {}",
                        self.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if let QuerySql::Forms(forms) = &query.sql {
                if forms.is_empty() {
                    return Err(self.error_at(
                        &["queries", name, "sql"],
                        format!("query {name} has an empty sql map"),
                        "give one SQL text or named forms",
                    ));
                }
                for form in forms.keys() {
                    if !name_ok(form) {
                        return Err(self.error_at(
                            &["queries", name, "sql", form],
                            format!("form name {form:?} may use only a-z, 0-9, - and _"),
                            "rename it",
                        ));
                    }
                }
            }
        }
        for (set, values) in &self.settings {
            for key in values.keys() {
                if !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    return Err(self.error_at(
                        &["settings", set, key],
                        format!("setting {key:?} in {set} is not a valid GUC name"),
                        "use names as in postgresql.conf, e.g. work_mem",
                    ));
                }
            }
        }
        self.validate_dataset()?;
        self.timeout()?;
        self.validate_cache()?;
        self.budget()?;
        Ok(())
    }

    /// Dataset steps: names, and the placeholders of parallel steps.
    fn validate_dataset(&self) -> Result<()> {
        const CHUNK_VARS: [&str; 4] = ["lo", "hi", "chunk", "chunks"];
        if let Some(var) = self
            .dataset
            .vars
            .keys()
            .find(|v| CHUNK_VARS.contains(&v.as_str()))
        {
            return Err(self.error_at(
                &["dataset", "vars", var],
                format!("dataset.vars: {{{{{var}}}}} is reserved for the chunks of parallel steps"),
                "rename the variable",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, step) in self.dataset.steps.iter().enumerate() {
            let i = i.to_string();
            let at = ["dataset", "steps", i.as_str(), "name"];
            let parallel_at = ["dataset", "steps", i.as_str(), "parallel"];
            if step.name.trim().is_empty() || !seen.insert(step.name.as_str()) {
                return Err(self.error_at(
                    &at,
                    format!("dataset step name {:?} is empty or used twice", step.name),
                    "give every dataset step its own name",
                ));
            }
            let uses = |v: &str| placeholders(&step.sql).any(|p| p == v);
            let Some(parallel) = step.parallel() else {
                if let Some(var) = CHUNK_VARS.iter().find(|v| uses(v)) {
                    return Err(self.error_at(
                        &["dataset", "steps", i.as_str(), "sql"],
                        format!("dataset step {}: {{{{{var}}}}} is only defined in parallel steps", step.name),
                        "add `parallel: { range: [first, last] }` to the step, or remove the placeholder",
                    ));
                }
                continue;
            };
            if parallel.chunks.is_some_and(|c| c == 0 || c > 100_000) {
                return Err(self.error_at(
                    &["dataset", "steps", i.as_str(), "parallel", "chunks"],
                    format!(
                        "dataset step {}: parallel.chunks must be 1 to 100000",
                        step.name
                    ),
                    "16 suits most steps",
                ));
            }
            let bounds = uses("lo") || uses("hi");
            if bounds && parallel.range.is_none() {
                return Err(self.error_at(
                    &parallel_at,
                    format!("dataset step {} uses {{{{lo}}}}/{{{{hi}}}} but has no parallel.range", step.name),
                    "say which values the chunks split, e.g. `parallel: { range: [1, \"{{documents}}\"] }`",
                ));
            }
            if self.dataset.bulk {
                // Streamed through COPY: it must be one INSERT ... SELECT (placeholders
                // stand in as numbers for the check).
                let mut probe = String::new();
                let mut rest = step.sql.as_str();
                while let Some(start) = rest.find("{{") {
                    probe.push_str(&rest[..start]);
                    match rest[start..].find("}}") {
                        Some(end) => {
                            probe.push('1');
                            rest = &rest[start + end + 2..];
                        }
                        None => {
                            rest = &rest[start..];
                            break;
                        }
                    }
                }
                probe.push_str(rest);
                if let Err(reason) = crate::experiment::dataset::parallel::parse_insert(&probe) {
                    return Err(self.error_at(
                        &["dataset", "steps", i.as_str(), "sql"],
                        format!("dataset step {}: {reason}", step.name),
                        "make it one INSERT ... SELECT, remove `parallel`, or set `dataset.bulk: false`",
                    ));
                }
            }
            if !bounds && !uses("chunk") {
                return Err(self.error_at(
                    &parallel_at,
                    format!(
                        "dataset step {} is parallel but its SQL uses neither {{{{lo}}}}/{{{{hi}}}} nor {{{{chunk}}}}: every chunk would insert every row",
                        step.name
                    ),
                    "bound its generate_series by {{lo}} and {{hi}} (with parallel.range), or filter by {{chunk}} of {{chunks}}",
                ));
            }
        }
        Ok(())
    }

    /// `runs.budget` as a duration, None when absent.
    pub fn budget(&self) -> Result<Option<Duration>> {
        self.runs
            .budget
            .as_ref()
            .map(|text| {
                parse_duration(text)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        self.error_at(
                            &["runs", "budget"],
                            format!("runs.budget {text:?} is not a duration above zero"),
                            "write it like 30s, 500ms or 2min",
                        )
                    })
            })
            .transpose()
    }

    pub fn timeout(&self) -> Result<Duration> {
        timeout_from_text(&self.runs.timeout).map_err(|reason| {
            self.error_at(
                &["runs", "timeout"],
                format!("runs.timeout: {reason}"),
                "write it like 30s, 500ms or 2min (above 0, at most 24h)",
            )
        })
    }

    /// Settings axis with its reference first; a single empty "default" when absent.
    pub fn settings_axis(&self) -> Vec<(String, Vec<(String, String)>)> {
        if self.settings.is_empty() {
            return vec![("default".into(), Vec::new())];
        }
        self.settings
            .iter()
            .map(|(name, values)| {
                let values = values
                    .iter()
                    .map(|(k, v)| (k.clone(), yaml_scalar(v).unwrap_or_default()))
                    .collect();
                (name.clone(), values)
            })
            .collect()
    }

    /// A variant's `server_settings`, as text.
    pub fn variant_server_settings(&self, name: &str) -> Vec<(String, String)> {
        self.variants
            .get(name)
            .map(|v| {
                v.server_settings
                    .iter()
                    .map(|(k, v)| (k.clone(), yaml_scalar(v).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Variant SQL text (inline or from its file).
    pub fn variant_sql(&self, name: &str) -> Result<String> {
        let Some(variant) = self.variants.get(name) else {
            return Ok(String::new());
        };
        match (&variant.sql, &variant.file) {
            (Some(sql), _) => Ok(sql.clone()),
            (None, Some(file)) => {
                let path = self.dir.join(file);
                std::fs::read_to_string(&path).map_err(|e| {
                    self.error_at(
                        &["variants", name, "file"],
                        format!("variant {name}: cannot read {}: {e}", path.display()),
                        "file paths are relative to the experiment file",
                    )
                })
            }
            (None, None) => Ok(String::new()),
        }
    }
}

/// The largest value a scaled var may take: what a bigint holds (`generate_series(1,
/// {{rows}})` must not wrap or saturate).
const MAX_SCALED_VAR: f64 = i64::MAX as f64;

/// Refuse a scale before anything is built: it must be a finite number above 0, and every
/// `dataset.vars` value scaled by it must fit a bigint (as `{{name}}` it becomes a row
/// count). `what` names where the scale came from (`--scale`, `dataset.scale`). The error
/// gives the numbers. (`--scale inf` used to become generate_series(1,
/// 9223372036854775807) and fill the disk.)
pub fn check_scale(spec: &Spec, scale: f64, what: &str) -> Result<()> {
    let hint = "1 is the seed's production size; 0.01 is a quick run";
    let shown = number(scale);
    if !scale.is_finite() {
        return Err(fail(format!("{what} {shown} is not a finite number"), hint));
    }
    if scale <= 0.0 {
        return Err(fail(format!("{what} {shown} must be above 0"), hint));
    }
    for (name, value) in &spec.dataset.vars {
        let scaled = (value * scale).round();
        if !scaled.is_finite() || scaled.abs() >= MAX_SCALED_VAR {
            return Err(fail(
                format!(
                    "{what} {shown} makes dataset.vars.{name} {} × {shown} = {}, more than a bigint holds ({}); nothing was built",
                    number(*value),
                    number(scaled),
                    i64::MAX
                ),
                format!(
                    "{hint}; the largest scale this experiment allows is below {}",
                    number(max_scale(spec))
                ),
            ));
        }
    }
    Ok(())
}

/// A number as a user would write it: 1000, 0.25, 1e300.
fn number(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-4..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// The scale at which the largest `dataset.vars` value reaches a bigint's limit.
fn max_scale(spec: &Spec) -> f64 {
    let largest = spec
        .dataset
        .vars
        .values()
        .map(|v| v.abs())
        .fold(1.0_f64, f64::max);
    MAX_SCALED_VAR / largest
}

/// Values for `{{name}}` at a scale: every var scaled and rounded (at least 1).
pub fn scaled_vars(spec: &Spec, scale: f64) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = spec
        .dataset
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), ((v * scale).round().max(1.0) as i64).to_string()))
        .collect();
    vars.push(("scale".into(), format!("{scale}")));
    vars
}

/// The names of the `{{name}}` placeholders in a text, in order.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split("{{")
        .skip(1)
        .filter_map(|piece| piece.split_once("}}").map(|(name, _)| name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::TextParam;

    const MINIMAL: &str = "name: t\nbaseline: a\ndataset:\n  scale: 0.5\n  vars: { rows: 1000 }\n  steps:\n    - name: fill\n      sql: SELECT {{rows}}\nvariants:\n  a: {}\nqueries:\n  q:\n    sql: SELECT 1\n";

    #[test]
    fn minimal_file_parses_with_defaults() {
        let spec = parse(Path::new("t.yaml"), MINIMAL).unwrap();
        assert_eq!(spec.runs.repeat, 20);
        assert_eq!(spec.runs.warmup, 1);
        assert_eq!(spec.settings_axis()[0].0, "default");
        let vars = scaled_vars(&spec, 0.5);
        assert_eq!(
            substitute("n={{rows}} s={{ scale }}", &vars, "x").unwrap(),
            "n=500 s=0.5"
        );
        assert!(substitute("{{nope}}", &vars, "x").is_err());
    }

    #[test]
    fn yaml_errors_carry_file_line_and_column() {
        let bad = MINIMAL.replace("  a: {}", "  a: {}\n  b: { sqll: x }");
        let err = parse(Path::new("exp.yaml"), &bad).unwrap_err().to_string();
        assert!(err.starts_with("exp.yaml:11:"), "{err}");
        assert!(err.contains("sqll"), "{err}");
    }

    #[test]
    fn semantic_errors_point_at_the_line() {
        let bad = MINIMAL.replace("baseline: a", "baseline: zz");
        let err = parse(Path::new("exp.yaml"), &bad).unwrap_err().to_string();
        assert!(err.starts_with("exp.yaml:2:1:"), "{err}");
        assert!(err.contains("zz"));
        // The key itself, not the first line that mentions the name: variant `a` is
        // written on line 2 (`baseline: a`) before its own key on line 10.
        let bad = MINIMAL.replace(
            "  q:\n    sql: SELECT 1",
            "  q:\n    sql: SELECT 1\n    variants: [a, zz]",
        );
        let err = parse(Path::new("exp.yaml"), &bad).unwrap_err().to_string();
        assert!(err.starts_with("exp.yaml:14:19:"), "{err}");
        let bad = MINIMAL.replace("  a: {}", "  a: { sql: x, file: y.sql }");
        let err = parse(Path::new("exp.yaml"), &bad).unwrap_err().to_string();
        assert!(err.starts_with("exp.yaml:10:16:"), "{err}");
    }

    #[test]
    fn unknown_keys_in_a_query_form_are_named_with_the_allowed_ones() {
        let bad = MINIMAL.replace(
            "    sql: SELECT 1",
            "    sql:\n      plain: SELECT 1\n      narrow:\n        sqll: SELECT 2",
        );
        let err = parse(Path::new("exp.yaml"), &bad).unwrap_err().to_string();
        assert!(err.contains("unknown key `sqll` in form narrow"), "{err}");
        assert!(err.contains("allowed keys: sql, variants"), "{err}");
        assert!(err.starts_with("exp.yaml:1"), "{err}");
        assert!(!err.contains("did not match any variant"), "{err}");
        let bad = MINIMAL.replace(
            "    sql: SELECT 1",
            "    sql:\n      narrow: { variants: [a] }",
        );
        let err = parse(Path::new("exp.yaml"), &bad).unwrap_err().to_string();
        assert!(err.contains("form narrow has no `sql`"), "{err}");
    }

    #[test]
    fn params_become_text_and_arrays() {
        let v: serde_json::Value = serde_saphyr::from_str("[1, \"a b\", null]").unwrap();
        assert_eq!(
            yaml_param(&v),
            TextParam(Some("{\"1\",\"a b\",NULL}".into()))
        );
        assert_eq!(yaml_param(&serde_json::Value::Null), TextParam(None));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn timeouts_of_zero_or_absurd_size_are_errors_not_panics() {
        for bad in [
            "0s",
            "0ms",
            "0.0001ms",
            "99999999999999999999999s",
            "1e400s",
            "25h",
            "5",
        ] {
            let err = timeout_from_text(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
            let yaml = MINIMAL.to_string() + &format!("runs: {{ timeout: \"{bad}\" }}\n");
            let err = parse(Path::new("exp.yaml"), &yaml).unwrap_err().to_string();
            assert!(err.contains("runs.timeout"), "{bad}: {err}");
        }
        assert_eq!(parse_duration("99999999999999999999999s"), None);
        assert_eq!(timeout_from_text("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(timeout_from_text("24h"), Ok(Duration::from_secs(86400)));
    }
}
