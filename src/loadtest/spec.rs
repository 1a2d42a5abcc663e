//! The `load:` section of an experiment file: transaction scripts, where their
//! parameters come from, how many clients, for how long. Checked up front by
//! [`LoadSpec::limits`] so a typo fails before any database work.

use std::time::Duration;

use anyhow::Result;
use indexmap::IndexMap;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::db::TextParam;
use crate::error::fail;
use crate::values::{parse_duration, yaml_param};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Client counts to sweep, e.g. [1, 8, 32, 64]; one connection per client. Absent
    /// when `groups` says who runs.
    #[serde(default)]
    pub clients: Vec<usize>,
    /// Client groups that run at the same time, each with its own clients, scripts and
    /// rate (20 writers at full speed beside 50 readers at 500 TPS): every run has all of
    /// them, and each group gets its own TPS, percentiles, errors and lock waits.
    #[serde(default)]
    pub groups: IndexMap<String, GroupSpec>,
    /// Checks run on the variant's database after every run; a row returned is a
    /// violation, and the variant fails (a form that breaks an invariant under
    /// concurrency is wrong, not fast).
    #[serde(default)]
    pub verify: IndexMap<String, VerifySpec>,
    /// Counters read at the start and the end of every run's measured window (SQL that
    /// returns one number): the report gives their change per second, e.g. events
    /// materialised per second when a transaction's work varies.
    #[serde(default)]
    pub counters: IndexMap<String, CounterSpec>,
    /// How often lock waits are sampled from `pg_stat_activity` + `pg_locks` during a
    /// run ("50ms"; "off" samples nothing).
    #[serde(default = "default_lock_sampling")]
    pub lock_sampling: String,
    /// Measured window per run ("10s"); the default when `transactions` is absent.
    #[serde(default)]
    pub duration: Option<String>,
    /// Instead of a duration: transactions per client per run (attempts, failed ones included).
    #[serde(default)]
    pub transactions: Option<u64>,
    /// Run before the measured window on the same connections, then discarded.
    #[serde(default = "default_warmup")]
    pub warmup: String,
    /// Runs per client count; reports show the median TPS and the spread.
    #[serde(default = "default_repeat")]
    pub repeat: usize,
    /// Fixes every parameter sequence and the hot key sets.
    #[serde(default)]
    pub seed: u64,
    /// Per statement: the server's `statement_timeout`, and slightly later a client-side
    /// cancel, so a hung server shows up as timeouts instead of a hung pgx.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Delay injected client-side before every round trip ("1ms"), because a Unix socket
    /// round trip costs microseconds while a network one costs milliseconds.
    #[serde(default)]
    pub rtt: Option<String>,
    /// How `rtt` is applied: `auto` (default: kernel netem between network namespaces
    /// where possible, else pgx's delay relay), `netem`, `relay` or `client`.
    #[serde(default)]
    pub rtt_mode: super::net::RttMode,
    #[serde(default)]
    pub mix: Mix,
    /// Client threads (like pgbench -j); default: one per CPU, at most one per client.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Numbers the summary judges every variant by (TPS at least, p50 / p99 at most).
    #[serde(default)]
    pub targets: Vec<super::result::LoadTarget>,
    /// `cold`: before every run pgx restarts its own server and drops the operating
    /// system's page cache of the database's files, so the run starts as after a deploy
    /// or a failover; `warm` (default): as the previous run left the caches.
    #[serde(default)]
    pub start: Start,
    /// SQL run on the database before every run's clients start (after the cold start):
    /// the hot-key warming a service does before it takes traffic. Its time is reported.
    #[serde(default)]
    pub on_start: Option<String>,
    /// Report the latency of each run's first N transactions (committed, in the order
    /// they started, warmup included) apart: what the first requests after the start see.
    #[serde(default)]
    pub first: Option<usize>,
    pub scripts: IndexMap<String, ScriptSpec>,
}

/// How a run's caches start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    #[default]
    Warm,
    Cold,
}

/// One client group: how many clients, which scripts (by weight; all when absent) and,
/// optionally, the rate the whole group aims at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// A count (`20`), or for one group of the load a sweep (`[1, 2, 4, 8]`): a run per
    /// count, the other groups as they are (N materialisers beside one producer).
    #[serde(deserialize_with = "one_or_many")]
    pub clients: Vec<usize>,
    #[serde(default)]
    pub scripts: Vec<String>,
    /// Transactions per second for the whole group, started on a Poisson schedule (as
    /// `pgbench --rate`); latency counts from the scheduled start, so a server that falls
    /// behind shows it. Absent: as fast as the clients go.
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub about: String,
}

/// A counter: its SQL (returning one number), or the SQL with which way is better, so the
/// summary can name the best variant by it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CounterSpec {
    Sql(String),
    Full {
        sql: String,
        #[serde(default)]
        better: Option<super::result::Better>,
        #[serde(default)]
        about: String,
    },
}

impl CounterSpec {
    pub fn sql(&self) -> &str {
        match self {
            CounterSpec::Sql(sql) | CounterSpec::Full { sql, .. } => sql,
        }
    }

    pub fn info(&self, name: &str) -> super::result::CounterInfo {
        match self {
            CounterSpec::Sql(_) => super::result::CounterInfo {
                name: name.to_string(),
                better: None,
                about: String::new(),
            },
            CounterSpec::Full { better, about, .. } => super::result::CounterInfo {
                name: name.to_string(),
                better: *better,
                about: about.clone(),
            },
        }
    }
}

/// A check after every run: `sql` returns the rows that violate it (none when it holds).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    pub sql: String,
    #[serde(default)]
    pub about: String,
}

/// How scripts share a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mix {
    /// Every transaction picks a script at random by weight: one result per client count.
    #[default]
    Weighted,
    /// Every script is measured on its own: one result per script and client count.
    Each,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub pattern: Pattern,
    /// Values drawn once per transaction, used by several statements as `{ref: name}`
    /// (like pgbench's `\set`): the same key looked up in N tables.
    #[serde(default, rename = "let")]
    pub lets: IndexMap<String, Generator>,
    pub statements: Vec<StatementSpec>,
    /// Split the request over this many sessions of the client, at once: the statements
    /// in this many contiguous slices, each pipelined on a connection of its own, the
    /// request done when the last slice's answers are in (seed 004's "3 connections × 10
    /// tables"). Each slice is one implicit transaction, not the script's one.
    #[serde(default)]
    pub fanout: Option<usize>,
    #[serde(default)]
    pub about: String,
}

/// How the statements of one transaction travel to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Each statement waits for its answer: N statements (+ BEGIN, COMMIT) = N (+2) round trips.
    #[default]
    Sequential,
    /// BEGIN, every statement and COMMIT are sent before any answer is awaited: one round trip.
    Pipelined,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementSpec {
    pub sql: String,
    /// One generator per `$n`, in order.
    #[serde(default)]
    pub params: Vec<Generator>,
}

/// Where a parameter's values come from; YAML like `{uniform: {min: 1, max: 1000}}`
/// (a single-key map: serde's externally tagged enum, as the YAML reader reads it).
/// Integer bounds may be `"{{var}}"` so they follow the dataset's scale.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Generator {
    Uniform {
        min: Bound,
        max: Bound,
    },
    /// `hot_share` of the draws go to `hot_fraction` of the keys, a pseudo-random subset
    /// fixed by the seed (not the lowest ids).
    Hot {
        min: Bound,
        max: Bound,
        #[serde(default = "default_hot_fraction")]
        hot_fraction: f64,
        #[serde(default = "default_hot_share")]
        hot_share: f64,
    },
    /// The first column of a query run once on the database, drawn uniformly.
    List {
        sql: String,
    },
    Choice {
        #[serde(deserialize_with = "yaml_params")]
        values: Vec<TextParam>,
    },
    Constant {
        #[serde(deserialize_with = "yaml_value")]
        value: TextParam,
    },
    /// min, min+1, ..., max, min, ... shared by all clients of a run (unique keys for inserts).
    Sequence {
        min: Bound,
        max: Bound,
    },
    /// The value a `let:` entry of the script drew for this transaction.
    Ref(String),
}

/// An integer, or a `{{var}}` placeholder resolved against the experiment's vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Int(i64),
    Var(String),
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Bound::Int)
                .ok_or_else(|| D::Error::custom(format!("{n} is not a 64-bit integer"))),
            serde_json::Value::String(s) => Ok(match s.trim().parse() {
                Ok(i) => Bound::Int(i),
                Err(_) => Bound::Var(s),
            }),
            other => Err(D::Error::custom(format!(
                "expected an integer or \"{{{{var}}}}\", found {other:?}"
            ))),
        }
    }
}

impl Bound {
    pub fn resolve(&self, vars: &[(String, String)], what: &str) -> Result<i64> {
        match self {
            Bound::Int(i) => Ok(*i),
            Bound::Var(text) => {
                let text = crate::values::substitute(text, vars, what)?;
                text.trim().parse().map_err(|_| {
                    fail(
                        format!("{what}: {text:?} is not an integer"),
                        "write a number or a {{var}} of the dataset",
                    )
                })
            }
        }
    }
}

fn yaml_value<'de, D: Deserializer<'de>>(d: D) -> Result<TextParam, D::Error> {
    Ok(yaml_param(&serde_json::Value::deserialize(d)?))
}

fn yaml_params<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TextParam>, D::Error> {
    let values = Vec::<serde_json::Value>::deserialize(d)?;
    Ok(values.iter().map(yaml_param).collect())
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(usize),
        Many(Vec<usize>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(n) => vec![n],
        OneOrMany::Many(list) => list,
    })
}

fn default_lock_sampling() -> String {
    "50ms".into()
}
fn default_warmup() -> String {
    "2s".into()
}
fn default_repeat() -> usize {
    3
}
fn default_timeout() -> String {
    "5s".into()
}
fn default_weight() -> u32 {
    1
}
fn default_hot_fraction() -> f64 {
    0.2
}
fn default_hot_share() -> f64 {
    0.8
}

/// Longest `duration` / `warmup` of one run: a week (a soak test, not a typo).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest per-statement `timeout`: a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest injected round trip: a minute.
pub const MAX_RTT: Duration = Duration::from_secs(60);

/// The size in seconds a duration text asks for, read the way `parse_duration` reads
/// it (number then unit); None when it is not a duration at all.
fn magnitude_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 0.001,
        "s" | "sec" => 1.0,
        "min" | "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(number * factor)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 && s.is_multiple_of(86_400) {
        format!("{} day(s)", s / 86_400)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Duration(Duration),
    /// Transactions per client.
    Transactions(u64),
}

/// The durations of a spec, parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub length: Length,
    pub warmup: Duration,
    pub timeout: Duration,
    pub rtt: Option<Duration>,
    /// None: lock waits are not sampled.
    pub lock_sampling: Option<Duration>,
    /// The first transactions of a run reported apart (0: none).
    pub first: usize,
}

impl LoadSpec {
    /// Check everything that does not need a database; returns the parsed durations.
    pub fn limits(&self) -> Result<Limits> {
        let duration = |key: &str, text: &str| {
            let max = match key {
                "timeout" => MAX_TIMEOUT,
                "rtt" => MAX_RTT,
                _ => MAX_DURATION,
            };
            // Checked before parse_duration, which would panic on values beyond Duration.
            if magnitude_seconds(text).is_some_and(|s| s.is_nan() || s > max.as_secs_f64()) {
                return Err(fail(
                    format!(
                        "load.{key}: {text:?} is longer than pgx accepts (at most {})",
                        human(max)
                    ),
                    "durations are for one run: 10s, 500ms or 2min",
                ));
            }
            parse_duration(text).ok_or_else(|| {
                fail(
                    format!("load.{key}: {text:?} is not a duration"),
                    "write it like 10s, 500ms or 2min",
                )
            })
        };
        if !self.groups.is_empty() {
            self.check_groups()?;
        } else if self.clients.is_empty() || self.clients.contains(&0) {
            return Err(fail(
                format!(
                    "load.clients {:?} needs client counts of 1 or more",
                    self.clients
                ),
                "for example clients: [1, 8, 32, 64]",
            ));
        }
        if self.repeat == 0 || self.threads == Some(0) {
            return Err(fail(
                "load.repeat and load.threads must be at least 1",
                "repeat: 3 reports a median and a spread",
            ));
        }
        let length = match (&self.duration, self.transactions) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "load: both duration and transactions are set",
                    "a run lasts either a duration or a number of transactions per client; keep one",
                ));
            }
            (None, Some(0)) => return Err(fail("load.transactions is 0", "use 1 or more")),
            (None, Some(n)) => Length::Transactions(n),
            (Some(text), None) => Length::Duration(duration("duration", text)?),
            (None, None) => Length::Duration(Duration::from_secs(10)),
        };
        if length == Length::Duration(Duration::ZERO) {
            return Err(fail("load.duration is 0", "measure for at least 1s"));
        }
        let timeout = duration("timeout", &self.timeout)?;
        if timeout < Duration::from_millis(1) {
            return Err(fail("load.timeout is below 1ms", "the default is 5s"));
        }
        let rtt = match &self.rtt {
            Some(text) => Some(duration("rtt", text)?).filter(|d| !d.is_zero()),
            None => None,
        };
        if self.scripts.is_empty() {
            return Err(fail(
                "load.scripts is empty",
                "add a script: scripts: { read: { statements: [{ sql: SELECT 1 }] } }",
            ));
        }
        if self.mix == Mix::Weighted && self.scripts.values().all(|s| s.weight == 0) {
            return Err(fail(
                "load: every script has weight 0",
                "give at least one script a weight of 1 or more",
            ));
        }
        for (name, script) in &self.scripts {
            script.check(name)?;
        }
        for (i, target) in self.targets.iter().enumerate() {
            let what = format!("load.targets[{i}]");
            if target.tps.is_none() && target.p50_ms.is_none() && target.p99_ms.is_none() {
                return Err(fail(
                    format!("{what} sets no number"),
                    "give tps (at least), p50_ms or p99_ms (at most), e.g. {clients: 64, tps: 5100}",
                ));
            }
            if let Some(script) = &target.script
                && self.mix == Mix::Each
                && !self.scripts.contains_key(script)
            {
                return Err(fail(
                    format!("{what}: no script named {script:?}"),
                    format!(
                        "the scripts are {}",
                        self.scripts.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if let Some(clients) = target.clients
                && !self.clients.contains(&clients)
                && self.groups.is_empty()
            {
                return Err(fail(
                    format!("{what}: {clients} clients is not in load.clients"),
                    "add it to the sweep or drop clients from the target",
                ));
            }
        }
        for (name, verify) in &self.verify {
            if verify.sql.trim().is_empty() {
                return Err(fail(
                    format!("load.verify.{name} has no SQL"),
                    "write a query that returns the rows violating the check",
                ));
            }
        }
        let lock_sampling = match self.lock_sampling.trim() {
            "off" | "none" => None,
            text => Some(duration("lock_sampling", text)?).filter(|d| !d.is_zero()),
        };
        if lock_sampling.is_some_and(|d| d < Duration::from_millis(10)) {
            return Err(fail(
                format!("load.lock_sampling {:?} is below 10ms", self.lock_sampling),
                "every sample is a query on the server under load: 50ms (the default) or more",
            ));
        }
        if self.first == Some(0) {
            return Err(fail(
                "load.first is 0",
                "first: 100 reports the first 100 requests of every run apart",
            ));
        }
        if self
            .on_start
            .as_ref()
            .is_some_and(|sql| sql.trim().is_empty())
        {
            return Err(fail(
                "load.on_start has no SQL",
                "write the statements that warm the caches, or leave it out",
            ));
        }
        Ok(Limits {
            length,
            warmup: duration("warmup", &self.warmup)?,
            timeout,
            rtt,
            lock_sampling,
            first: self.first.unwrap_or(0),
        })
    }

    fn check_groups(&self) -> Result<()> {
        if !self.clients.is_empty() {
            return Err(fail(
                "load: both clients and groups are set",
                "with groups, each group says its clients: groups: { writers: { clients: 20 } }",
            ));
        }
        if self.mix == Mix::Each {
            return Err(fail(
                "load: mix: each measures scripts one at a time, groups run them together",
                "drop mix, or drop groups",
            ));
        }
        let swept: Vec<&String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.clients.len() > 1)
            .map(|(name, _)| name)
            .collect();
        if swept.len() > 1 {
            return Err(fail(
                format!(
                    "load.groups: {} each sweep their clients",
                    swept
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                "one group may sweep (clients: [1, 2, 4, 8]); give the others one count",
            ));
        }
        for (name, group) in &self.groups {
            let what = format!("load.groups.{name}");
            if group.clients.is_empty() || group.clients.contains(&0) {
                return Err(fail(
                    format!(
                        "{what}: clients {:?} needs counts of 1 or more",
                        group.clients
                    ),
                    "clients: 20, or a sweep: clients: [1, 2, 4, 8]",
                ));
            }
            if let Some(rate) = group.rate
                && !(rate.is_finite() && rate > 0.0)
            {
                return Err(fail(
                    format!(
                        "{what}: rate {rate} is not a positive number of transactions per second"
                    ),
                    "rate: 500 starts 500 transactions a second across the group",
                ));
            }
            for script in &group.scripts {
                if !self.scripts.contains_key(script) {
                    return Err(fail(
                        format!("{what}: no script named {script:?}"),
                        format!(
                            "the scripts are {}",
                            self.scripts.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The clients of one run at most: the sweep's largest count, or every group's.
    pub fn most_clients(&self) -> usize {
        if self.groups.is_empty() {
            self.clients.iter().copied().max().unwrap_or(0)
        } else {
            self.groups
                .values()
                .map(|g| g.clients.iter().copied().max().unwrap_or(0))
                .sum()
        }
    }
}

impl ScriptSpec {
    fn check(&self, name: &str) -> Result<()> {
        if self.statements.is_empty() {
            return Err(fail(
                format!("load script {name} has no statements"),
                "add statements: [{ sql: ... }]",
            ));
        }
        if let Some(n) = self.fanout {
            if n < 2 || n > self.statements.len() {
                return Err(fail(
                    format!(
                        "load script {name}: fanout {n} for {} statements",
                        self.statements.len()
                    ),
                    "fanout splits the statements over 2 or more sessions, at most one per statement",
                ));
            }
            if self.pattern != Pattern::Pipelined {
                return Err(fail(
                    format!("load script {name}: fanout needs pattern: pipelined"),
                    "each session's slice of the statements is sent in one flush: set pattern: pipelined",
                ));
            }
        }
        for (key, generator) in &self.lets {
            if matches!(generator, Generator::Ref(_)) {
                return Err(fail(
                    format!("load script {name}: let.{key} is a ref"),
                    "let entries draw values; refs use them in statement params",
                ));
            }
            generator.check(&format!("load script {name}, let.{key}"))?;
        }
        for (i, statement) in self.statements.iter().enumerate() {
            for (j, generator) in statement.params.iter().enumerate() {
                let what = format!("load script {name}, statement {}, ${}", i + 1, j + 1);
                if let Generator::Ref(key) = generator
                    && !self.lets.contains_key(key)
                {
                    return Err(fail(
                        format!("{what}: ref {key:?} is not defined"),
                        format!("define it under the script's let: {{ {key}: {{uniform: ...}} }}"),
                    ));
                }
                generator.check(&what)?;
            }
        }
        Ok(())
    }
}

impl Generator {
    /// Checks that need no vars; bounds given as `{{var}}` are checked when resolved.
    fn check(&self, what: &str) -> Result<()> {
        match self {
            Generator::Hot {
                hot_fraction,
                hot_share,
                ..
            } if !((0.0..=1.0).contains(hot_fraction)
                && *hot_fraction > 0.0
                && (0.0..=1.0).contains(hot_share)) =>
            {
                Err(fail(
                    format!("{what}: hot_fraction must be in (0, 1] and hot_share in [0, 1]"),
                    "hot_fraction: 0.2, hot_share: 0.8 puts 80% of the draws on 20% of the keys",
                ))
            }
            Generator::Choice { values } if values.is_empty() => Err(fail(
                format!("{what}: choice has no values"),
                "choice: { values: [a, b, c] }",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
clients: [1, 8]
duration: 2s
seed: 7
rtt: 1ms
scripts:
  read:
    weight: 9
    statements:
      - sql: SELECT $1::int
        params: [{uniform: {min: 1, max: "{{rows}}"}}]
  lookup:
    pattern: pipelined
    let: { key: {hot: {min: 1, max: 100}} }
    statements:
      - { sql: SELECT $1::int, params: [{ref: key}] }
      - { sql: SELECT $1::text, params: [{choice: {values: [a, 2, true]}}] }
      - { sql: SELECT $1, params: [{constant: {value: 5}}, {list: {sql: SELECT 1}}] }
"#;

    #[test]
    fn parses_with_defaults() {
        let spec: LoadSpec = serde_saphyr::from_str(SPEC).unwrap();
        let limits = spec.limits().unwrap();
        assert_eq!(limits.length, Length::Duration(Duration::from_secs(2)));
        assert_eq!(limits.warmup, Duration::from_secs(2));
        assert_eq!(limits.timeout, Duration::from_secs(5));
        assert_eq!(limits.rtt, Some(Duration::from_millis(1)));
        assert_eq!(spec.repeat, 3);
        assert_eq!(spec.mix, Mix::Weighted);
        let lookup = &spec.scripts["lookup"];
        assert_eq!(lookup.pattern, Pattern::Pipelined);
        assert_eq!(lookup.weight, 1);
        assert!(matches!(
            lookup.lets["key"],
            Generator::Hot { hot_fraction, hot_share, .. } if hot_fraction == 0.2 && hot_share == 0.8
        ));
        match &lookup.statements[1].params[0] {
            Generator::Choice { values } => assert_eq!(
                values,
                &["a", "2", "true"].map(|v| TextParam(Some(v.into())))
            ),
            other => panic!("{other:?}"),
        }
        match &spec.scripts["read"].statements[0].params[0] {
            Generator::Uniform { max, .. } => {
                let vars = [("rows".to_string(), "500".to_string())];
                assert_eq!(max.resolve(&vars, "t").unwrap(), 500);
                assert!(max.resolve(&[], "t").is_err());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_documented_example_is_valid() {
        let readme = include_str!("../../docs/loads.md");
        let start = readme
            .find("```yaml\nload:\n")
            .expect("docs/loads.md has a load example")
            + 8;
        let end = start + readme[start..].find("```").expect("closed block");
        #[derive(Deserialize)]
        struct File {
            load: LoadSpec,
        }
        let file: File = serde_saphyr::from_str(&readme[start..end]).unwrap();
        file.load.limits().unwrap();
        assert_eq!(file.load.scripts.len(), 3);
    }

    #[test]
    fn rejects_mistakes() {
        let bad = [
            (
                "clients: []\nscripts: {a: {statements: [{sql: x}]}}",
                "clients",
            ),
            (
                "clients: [1]\nduration: 1s\ntransactions: 5\nscripts: {a: {statements: [{sql: x}]}}",
                "both",
            ),
            (
                "clients: [1]\nduration: soon\nscripts: {a: {statements: [{sql: x}]}}",
                "duration",
            ),
            (
                "clients: [1]\nscripts: {a: {statements: []}}",
                "no statements",
            ),
            (
                "clients: [1]\nscripts: {a: {statements: [{sql: x, params: [{ref: k}]}]}}",
                "not defined",
            ),
            (
                "clients: [1]\nscripts: {a: {statements: [{sql: x, params: [{hot: {min: 1, max: 9, hot_fraction: 0}}]}]}}",
                "hot_fraction",
            ),
            (
                "clients: [1]\ngroups: {w: {clients: 2}}\nscripts: {a: {statements: [{sql: x}]}}",
                "both clients and groups",
            ),
            (
                "groups: {w: {clients: 2, scripts: [b]}}\nscripts: {a: {statements: [{sql: x}]}}",
                "no script named \"b\"",
            ),
            (
                "groups: {w: {clients: 2, rate: 0}}\nscripts: {a: {statements: [{sql: x}]}}",
                "rate 0",
            ),
            (
                "groups: {w: {clients: 0}}\nscripts: {a: {statements: [{sql: x}]}}",
                "needs counts of 1 or more",
            ),
            (
                "groups: {w: {clients: [1, 2]}, r: {clients: [3, 4]}}\nscripts: {a: {statements: [{sql: x}]}}",
                "w and r each sweep",
            ),
            (
                "groups: {w: {clients: 1}}\nmix: each\nscripts: {a: {statements: [{sql: x}]}}",
                "mix: each",
            ),
            (
                "clients: [1]\nlock_sampling: 1ms\nscripts: {a: {statements: [{sql: x}]}}",
                "below 10ms",
            ),
            (
                "clients: [1]\nverify: {c: {sql: ' '}}\nscripts: {a: {statements: [{sql: x}]}}",
                "has no SQL",
            ),
        ];
        for (yaml, expected) in bad {
            let spec: LoadSpec = serde_saphyr::from_str(yaml).unwrap();
            let err = spec.limits().unwrap_err().to_string();
            assert!(err.contains(expected), "{yaml}: {err}");
        }
        let absurd = [
            ("duration: 99999999999999999999999s", "load.duration"),
            ("warmup: 9999999999h", "load.warmup"),
            ("timeout: 25h", "load.timeout"),
            ("rtt: 2min", "load.rtt"),
            ("duration: 8e3s", "not a duration"),
        ];
        for (line, expected) in absurd {
            let yaml =
                format!("clients: [1]\n{line}\nscripts: {{a: {{statements: [{{sql: x}}]}}}}");
            let spec: LoadSpec = serde_saphyr::from_str(&yaml).unwrap();
            let err = spec.limits().unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let week = "clients: [1]\nduration: 168h\nwarmup: 1s\ntimeout: 24h\nrtt: 60s\nscripts: {a: {statements: [{sql: x}]}}";
        let spec: LoadSpec = serde_saphyr::from_str(week).unwrap();
        assert!(spec.limits().is_ok(), "the maximum values are accepted");
        let typo = "clients: [1]\nscripts: {a: {statement: []}}";
        assert!(serde_saphyr::from_str::<LoadSpec>(typo).is_err());
        let unknown = "clients: [1]\nscripts: {a: {statements: [{sql: x, params: [{zipf: {}}]}]}}";
        assert!(serde_saphyr::from_str::<LoadSpec>(unknown).is_err());
    }
}
