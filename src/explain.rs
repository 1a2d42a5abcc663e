//! Summarise `EXPLAIN (ANALYZE, BUFFERS, SETTINGS, FORMAT JSON)` output.
//!
//! pgx runs the same statement many times per index strategy, so this module
//! turns one EXPLAIN document into a flat [`PlanSummary`]: numbers that can be
//! aggregated across runs, plus a `signature` that groups runs by plan shape.
//!
//! The JSON is walked as a `serde_json::Value` rather than deserialised into
//! structs, because keys differ between PostgreSQL versions and options
//! (TIMING OFF drops the time keys, PG 17 renames the I/O timing keys, PG 18
//! prints fractional row counts). Unknown keys are ignored and missing keys
//! read as zero.
//!
//! Counter semantics, verified on PostgreSQL 15.18 with nested loops whose
//! inner side ran 4 times (see the `nested_loop_*` fixtures):
//! - `Actual Rows`, `Rows Removed by Filter` and `Rows Removed by Index
//!   Recheck` are per-loop averages, printed rounded to an integer, so they
//!   are multiplied by `Actual Loops` (the product can be off by a rounding
//!   error of up to `loops / 2`).
//! - `Heap Fetches`, `Exact Heap Blocks` and `Lossy Heap Blocks` are totals
//!   over all loops (explain.c prints `instrument->ntuples2` and the bitmap
//!   page counters without dividing), so they are summed as they are.
//!   In PG 15 a parallel Bitmap Heap Scan reports the leader's blocks only.
//! - Buffer counters are totals over all loops and include everything that
//!   ran inside the node: children, InitPlans/CTEs evaluated on its behalf,
//!   and parallel workers (Gather shows the workers' blocks). The top node
//!   therefore holds the whole execution; adding InitPlans on top would
//!   double count. Only work outside the plan tree (AFTER triggers, FK
//!   checks) is missing, and EXPLAIN does not report buffers for it.

use std::collections::BTreeSet;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

/// Block counters of one node or of planning; local buffers are left out
/// because pgx benchmarks shared tables only.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Buffers {
    pub shared_hit: u64,
    pub shared_read: u64,
    pub shared_dirtied: u64,
    pub shared_written: u64,
    pub temp_read: u64,
    pub temp_written: u64,
}

impl Buffers {
    /// Reads the PG block-counter keys of a plan node or of `"Planning"`.
    fn from_json(v: &Value) -> Self {
        Buffers {
            shared_hit: count(v, "Shared Hit Blocks"),
            shared_read: count(v, "Shared Read Blocks"),
            shared_dirtied: count(v, "Shared Dirtied Blocks"),
            shared_written: count(v, "Shared Written Blocks"),
            temp_read: count(v, "Temp Read Blocks"),
            temp_written: count(v, "Temp Written Blocks"),
        }
    }
}

/// How the plan reaches table rows: the headline of an index-strategy
/// comparison. Only scans of stored tables count (Seq, Index, Index Only,
/// Bitmap Heap); CTE, VALUES, function and subquery scans are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Access {
    IndexOnlyScan,
    IndexScan,
    BitmapScan,
    SeqScan,
    /// Several table-scan kinds appear in the plan (joins, InitPlans, or
    /// partitions planned differently).
    Mixed,
    /// No table scan at all, e.g. a bare `Result`.
    None,
}

/// One EXPLAIN ANALYZE run reduced to what pgx compares between strategies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlanSummary {
    pub planning_ms: f64,
    pub execution_ms: f64,
    /// Plan shape, stable across runs; used to group runs and detect plan
    /// flips. Grammar: nodes in pre-order joined by `" > "`; a node with
    /// several children lists them as `" > (a, b)"`.
    ///
    /// A node reads `Node Type` with PG's text-format prefixes and suffixes
    /// (`Parallel Seq Scan`, `Partial HashAggregate`, `Index Scan Backward`),
    /// then `(Operation)` for ModifyTable or `(Join Type)` for non-inner
    /// joins, then `[index]` for index scans. InitPlans and SubPlans are
    /// prefixed `InitPlan `/`SubPlan `.
    ///
    /// Partitions: members of an Append/Merge Append whose subtrees have
    /// equal signatures are grouped, in first-seen order, and suffixed ` xN`
    /// (parenthesised first when the member spans several nodes), e.g.
    /// `Append > (Bitmap Heap Scan > Bitmap Index Scan[*_ref_idx]) x4`.
    /// Per-partition subtrees only compare equal because, inside a partition
    /// scan, an index name starting with `<partition>_` (PG's automatic name
    /// for the index a partitioned index creates on each partition) has that
    /// prefix replaced by `*`: `ref_p0_ref_idx` on `ref_p0` becomes
    /// `*_ref_idx`. Indexes not named after their partition stay verbatim
    /// and do not collapse. A lone partition left by plan-time pruning is
    /// normalised the same way (see `partitions_scanned`), so lookups pruned
    /// to different partitions by different parameters share a signature.
    ///
    /// No row counts, costs or times appear in it.
    pub signature: String,
    pub access: Access,
    /// Every `Index Name` used, verbatim, distinct and sorted.
    pub index_names: Vec<String>,
    /// Every table scanned (`Relation Name` of scan nodes), distinct and sorted.
    #[serde(default)]
    pub relations: Vec<String>,
    /// An index scan returns rows in `ORDER BY` order itself ("Order By" key, e.g. KNN
    /// `<->` on a GiST index), so no Sort node has to read every candidate.
    #[serde(default)]
    pub index_ordered: bool,
    /// Top node `Actual Rows * Actual Loops`.
    pub rows: f64,
    /// For DML (a top `ModifyTable`): the rows it was fed, i.e. inserted, updated or
    /// deleted (its own row count is 0 without RETURNING). None for a query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<f64>,
    /// Sum over nodes; PG reports a total over loops.
    pub heap_fetches: u64,
    /// Sum over nodes of the per-loop value times loops.
    pub rows_removed_by_filter: u64,
    /// Sum over nodes of the per-loop value times loops.
    pub rows_removed_by_recheck: u64,
    /// Sum over nodes; PG reports a total over loops.
    pub exact_heap_blocks: u64,
    /// Sum over nodes; PG reports a total over loops.
    pub lossy_heap_blocks: u64,
    /// Whole execution: the top node's counters (see module docs).
    pub buffers: Buffers,
    /// Catalog and statistics reads done by the planner (`"Planning"`).
    pub planning_buffers: Buffers,
    /// Time spent reading blocks the execution did not find in shared buffers (top node's
    /// `I/O Read Time`, PG 17+ `Shared I/O Read Time`); 0 unless `track_io_timing` is on.
    #[serde(default)]
    pub io_read_ms: f64,
    /// Executed (loops > 0) table scans of partitions. A scan counts as a
    /// partition scan when it sits below an Append/Merge Append, or when its
    /// alias is a `_`-separated prefix of its relation name: that is how PG
    /// labels the single partition left after plan-time pruning, where the
    /// Append node is removed (`ref_p2` scanned as `ref`). UNION ALL
    /// branches below an Append are counted too.
    pub partitions_scanned: u64,
    /// Sum of `Subplans Removed` (pruning at executor start-up, e.g. a
    /// generic plan with `$1`).
    pub subplans_removed: u64,
    /// Table scans with `Actual Loops == 0`, e.g. partitions skipped by
    /// run-time pruning on an InitPlan value.
    pub never_executed: u64,
    pub workers_planned: u64,
    pub workers_launched: u64,
    /// A top-level `"JIT"` section exists: JIT compile time can dominate
    /// short queries and should be flagged.
    pub jit: bool,
    /// Non-default planner settings (`"Settings"`), sorted by name, so that
    /// runs under different GUCs are never silently compared.
    pub settings: Vec<(String, String)>,
    /// Calls of triggers (foreign-key checks and cascades among them), summed over the
    /// top-level `"Triggers"`: work EXPLAIN reports no plan or buffers for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trigger_calls: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Blocks (and other counters) that differ by more than this share, and by more than
/// one, differ for real: a catalog lookup can add a block or two.
pub const COUNT_TOLERANCE: f64 = 0.01;

/// Do two counts differ beyond [`COUNT_TOLERANCE`]?
pub fn counts_differ(a: u64, b: u64) -> bool {
    let gap = a.abs_diff(b);
    gap > 1 && gap as f64 > COUNT_TOLERANCE * a.max(b) as f64
}

impl PlanSummary {
    /// Shared blocks touched (hit + read).
    pub fn blocks(&self) -> u64 {
        self.buffers.shared_hit + self.buffers.shared_read
    }

    /// Does this run do exactly the work `other` does, by everything EXPLAIN counts:
    /// the same plan, rows, blocks, heap fetches, temporary blocks, exact and lossy
    /// bitmap blocks, rows removed and partitions scanned? False when EXPLAIN cannot
    /// see all of the work: a run that called triggers (foreign-key checks, cascades)
    /// or scanned no table at all (a function call, whose statements EXPLAIN hides).
    pub fn same_work(&self, other: &PlanSummary) -> bool {
        let temp = |p: &PlanSummary| p.buffers.temp_read + p.buffers.temp_written;
        let opaque = |p: &PlanSummary| p.trigger_calls > 0 || p.access == Access::None;
        !opaque(self)
            && !opaque(other)
            && self.signature == other.signature
            && self.rows == other.rows
            && self.rows_affected == other.rows_affected
            && self.partitions_scanned == other.partitions_scanned
            && [
                (self.blocks(), other.blocks()),
                (self.heap_fetches, other.heap_fetches),
                (temp(self), temp(other)),
                (self.exact_heap_blocks, other.exact_heap_blocks),
                (self.lossy_heap_blocks, other.lossy_heap_blocks),
                (self.rows_removed_by_filter, other.rows_removed_by_filter),
                (self.rows_removed_by_recheck, other.rows_removed_by_recheck),
            ]
            .iter()
            .all(|(a, b)| !counts_differ(*a, *b))
    }
}

/// One plan node as data (the reporters draw it): what EXPLAIN's text format shows
/// of it, with the counters that are not zero.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlanNode {
    /// Node name as EXPLAIN's text format spells it (`Parallel Seq Scan`,
    /// `HashAggregate`, `ModifyTable(Delete)`), without index or relation.
    pub label: String,
    /// `Subplan Name` of an InitPlan / SubPlan / CTE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subplan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// The alias when it differs from the relation (or the only name of a CTE scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Absent in plain EXPLAIN; 0 for a node that never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loops: Option<f64>,
    /// Rows per loop, as PostgreSQL prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<f64>,
    /// Per-loop total time, only with TIMING ON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    pub shared_hit: u64,
    pub shared_read: u64,
    /// Other counters that are not zero, by short name (`filtered`, `heap_fetches`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<PlanNode>,
}

/// One EXPLAIN document: the facts pgx aggregates, and the tree for the reader.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub summary: PlanSummary,
    pub tree: PlanNode,
}

/// Parses the JSON that `EXPLAIN (ANALYZE, BUFFERS, SETTINGS, FORMAT JSON)`
/// prints (a one-element array; a bare object is accepted as well).
pub fn parse_explain(json: &str) -> Result<Explained> {
    let doc: Value = serde_json::from_str(json).context("EXPLAIN output is not valid JSON")?;
    let root = match &doc {
        Value::Array(items) => items
            .first()
            .ok_or_else(|| anyhow!("EXPLAIN JSON is an empty array"))?,
        other => other,
    };
    let plan = root
        .get("Plan")
        .filter(|p| p.is_object())
        .ok_or_else(|| anyhow!("EXPLAIN JSON has no \"Plan\" object"))?;

    let mut walk = Walk::default();
    let (signature, tree) = walk.visit(plan, Ctx::default());

    let mut settings: Vec<(String, String)> = root
        .get("Settings")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    settings.sort();

    let access = match walk.kinds.as_slice() {
        [] => Access::None,
        [only] => *only,
        _ => Access::Mixed,
    };

    let summary = PlanSummary {
        planning_ms: num(root, "Planning Time").unwrap_or(0.0),
        execution_ms: num(root, "Execution Time").unwrap_or(0.0),
        signature,
        access,
        index_names: walk.index_names.into_iter().collect(),
        relations: walk.relations.into_iter().collect(),
        index_ordered: walk.index_ordered,
        rows: num(plan, "Actual Rows").unwrap_or(0.0) * num(plan, "Actual Loops").unwrap_or(0.0),
        rows_affected: (plan.get("Node Type").and_then(Value::as_str) == Some("ModifyTable")).then(
            || {
                plan.get("Plans")
                    .and_then(Value::as_array)
                    .and_then(|children| children.first())
                    .map(|child| {
                        num(child, "Actual Rows").unwrap_or(0.0)
                            * num(child, "Actual Loops").unwrap_or(0.0)
                    })
                    .unwrap_or(0.0)
            },
        ),
        heap_fetches: walk.heap_fetches,
        rows_removed_by_filter: walk.removed_by_filter,
        rows_removed_by_recheck: walk.removed_by_recheck,
        exact_heap_blocks: walk.exact_blocks,
        lossy_heap_blocks: walk.lossy_blocks,
        buffers: Buffers::from_json(plan),
        planning_buffers: root
            .get("Planning")
            .map(Buffers::from_json)
            .unwrap_or_default(),
        io_read_ms: num(plan, "I/O Read Time")
            .or_else(|| num(plan, "Shared I/O Read Time"))
            .unwrap_or(0.0),
        partitions_scanned: walk.partitions_scanned,
        subplans_removed: walk.subplans_removed,
        never_executed: walk.never_executed,
        workers_planned: walk.workers_planned,
        workers_launched: walk.workers_launched,
        jit: root.get("JIT").is_some(),
        settings,
        trigger_calls: root
            .get("Triggers")
            .and_then(Value::as_array)
            .map(|triggers| {
                triggers
                    .iter()
                    .map(|t| num(t, "Calls").unwrap_or(0.0) as u64)
                    .sum()
            })
            .unwrap_or(0),
    };
    Ok(Explained { summary, tree })
}

/// What a node inherits from its ancestors.
#[derive(Clone, Copy, Default)]
struct Ctx<'a> {
    /// Below an Append/Merge Append (reset at InitPlan/SubPlan boundaries,
    /// which are separate queries that merely run there).
    under_append: bool,
    /// Partition whose name prefixes index names in this subtree; Bitmap
    /// Index Scans carry no relation, so they take it from their heap scan.
    partition: Option<&'a str>,
}

/// Accumulates the per-node counters during one pre-order traversal.
#[derive(Default)]
struct Walk {
    /// Distinct table-scan kinds seen (at most four, so a Vec is enough).
    kinds: Vec<Access>,
    index_names: BTreeSet<String>,
    relations: BTreeSet<String>,
    index_ordered: bool,
    heap_fetches: u64,
    removed_by_filter: u64,
    removed_by_recheck: u64,
    exact_blocks: u64,
    lossy_blocks: u64,
    partitions_scanned: u64,
    subplans_removed: u64,
    never_executed: u64,
    workers_planned: u64,
    workers_launched: u64,
}

impl Walk {
    /// Records `node` and its subtree; returns the subtree's signature and tree.
    fn visit<'a>(&mut self, node: &'a Value, ctx: Ctx<'a>) -> (String, PlanNode) {
        let node_type = text(node, "Node Type").unwrap_or("?");
        let relation = text(node, "Relation Name");
        let loops = num(node, "Actual Loops");
        let is_table_scan = relation.is_some() && node_type.ends_with("Scan");

        let partition = match relation {
            Some(rel) if ctx.under_append || alias_marks_partition(rel, text(node, "Alias")) => {
                Some(rel)
            }
            Some(_) => None,
            None => ctx.partition,
        };

        if let Some(kind) = access_kind(node_type)
            && !self.kinds.contains(&kind)
        {
            self.kinds.push(kind);
        }
        if is_table_scan {
            match loops {
                Some(l) if l > 0.0 && partition.is_some() => self.partitions_scanned += 1,
                Some(l) if l <= 0.0 => self.never_executed += 1,
                _ => {}
            }
        }
        let index = text(node, "Index Name");
        if let Some(name) = index {
            self.index_names.insert(name.to_owned());
            if node.get("Order By").is_some() {
                self.index_ordered = true;
            }
        }
        if let Some(rel) = relation.filter(|_| is_table_scan) {
            self.relations.insert(rel.to_owned());
        }
        // Per-loop averages back to totals; without "Actual Loops" (plain
        // EXPLAIN) there is no loop count to undo.
        let per_loop_total = |key| (num(node, key).unwrap_or(0.0) * loops.unwrap_or(1.0)).round();
        self.removed_by_filter += per_loop_total("Rows Removed by Filter") as u64;
        self.removed_by_recheck += per_loop_total("Rows Removed by Index Recheck") as u64;
        self.heap_fetches += count(node, "Heap Fetches");
        self.exact_blocks += count(node, "Exact Heap Blocks");
        self.lossy_blocks += count(node, "Lossy Heap Blocks");
        self.subplans_removed += count(node, "Subplans Removed");
        self.workers_planned += count(node, "Workers Planned");
        self.workers_launched += count(node, "Workers Launched");

        let base = base_label(node, node_type);
        let mut tree = plan_node(node, &base);

        let mut label = base;
        if let Some(name) = index {
            let shown = partition
                .and_then(|rel| name.strip_prefix(rel))
                .filter(|rest| rest.starts_with('_'))
                .map_or_else(|| name.to_owned(), |rest| format!("*{rest}"));
            label = format!("{label}[{shown}]");
        }
        if let Some(rel) = text(node, "Parent Relationship")
            && (rel == "InitPlan" || rel == "SubPlan")
        {
            label = format!("{rel} {label}");
        }

        let is_append = matches!(node_type, "Append" | "Merge Append");
        let mut parts: Vec<String> = Vec::new();
        let mut members: Vec<(String, usize)> = Vec::new();
        for child in children(node) {
            let relationship = text(child, "Parent Relationship").unwrap_or("");
            let separate_query = matches!(relationship, "InitPlan" | "SubPlan");
            let child_ctx = Ctx {
                under_append: !separate_query && (ctx.under_append || is_append),
                partition: if separate_query { None } else { partition },
            };
            let (sig, child_tree) = self.visit(child, child_ctx);
            tree.children.push(child_tree);
            if is_append && relationship == "Member" {
                match members.iter_mut().find(|(s, _)| *s == sig) {
                    Some((_, n)) => *n += 1,
                    None => members.push((sig, 1)),
                }
            } else {
                parts.push(sig);
            }
        }
        // A chained member is parenthesised so the count covers all of it.
        parts.extend(members.into_iter().map(|(sig, n)| {
            if sig.contains(" > ") {
                format!("({sig}) x{n}")
            } else {
                format!("{sig} x{n}")
            }
        }));
        let signature = match parts.len() {
            0 => label,
            1 => format!("{label} > {}", parts.concat()),
            _ => format!("{label} > ({})", parts.join(", ")),
        };
        (signature, tree)
    }
}

/// The node's own facts, children not yet attached.
fn plan_node(node: &Value, base: &str) -> PlanNode {
    let relation = text(node, "Relation Name").map(str::to_owned);
    let alias = text(node, "Alias")
        .filter(|a| relation.as_deref() != Some(*a))
        .map(str::to_owned);
    let counters = [
        ("Shared Dirtied Blocks", "dirtied"),
        ("Shared Written Blocks", "written"),
        ("Temp Read Blocks", "temp_read"),
        ("Temp Written Blocks", "temp_written"),
        ("Rows Removed by Filter", "filtered"),
        ("Rows Removed by Index Recheck", "rechecked"),
        ("Heap Fetches", "heap_fetches"),
        ("Exact Heap Blocks", "exact"),
        ("Lossy Heap Blocks", "lossy"),
        ("Subplans Removed", "subplans_removed"),
        ("Workers Launched", "workers"),
    ]
    .into_iter()
    .filter_map(|(key, short)| {
        let v = count(node, key);
        (v > 0).then(|| (short.to_string(), v))
    })
    .collect();
    let loops = num(node, "Actual Loops");
    PlanNode {
        label: base.to_string(),
        subplan: text(node, "Subplan Name").map(str::to_owned),
        index: text(node, "Index Name").map(str::to_owned),
        relation,
        alias,
        loops,
        rows: loops.and_then(|_| num(node, "Actual Rows")),
        total_ms: num(node, "Actual Total Time"),
        shared_hit: count(node, "Shared Hit Blocks"),
        shared_read: count(node, "Shared Read Blocks"),
        counters,
        children: Vec::new(),
    }
}

/// Node name as EXPLAIN's text format spells it, without index/relation,
/// so the tree and the signature read like familiar EXPLAIN output.
fn base_label(node: &Value, node_type: &str) -> String {
    let mut label = String::new();
    if let Some(mode @ ("Partial" | "Finalize")) = text(node, "Partial Mode") {
        label.push_str(mode);
        label.push(' ');
    }
    if node.get("Parallel Aware").and_then(Value::as_bool) == Some(true) {
        label.push_str("Parallel ");
    }
    let name = match (node_type, text(node, "Strategy")) {
        ("Aggregate", Some("Sorted")) => "GroupAggregate",
        ("Aggregate", Some("Hashed")) => "HashAggregate",
        ("Aggregate", Some("Mixed")) => "MixedAggregate",
        _ => node_type,
    };
    label.push_str(name);
    if text(node, "Scan Direction") == Some("Backward") {
        label.push_str(" Backward");
    }
    if let Some(op) = text(node, "Operation") {
        label = format!("{label}({op})");
    } else if let Some(join) = text(node, "Join Type").filter(|j| *j != "Inner") {
        label = format!("{label}({join})");
    }
    label
}

/// Table-scan kind of a node type; `None` for everything else. A Bitmap
/// Index Scan is part of the Bitmap Heap Scan above it, not a kind itself.
fn access_kind(node_type: &str) -> Option<Access> {
    match node_type {
        "Index Only Scan" => Some(Access::IndexOnlyScan),
        "Index Scan" => Some(Access::IndexScan),
        "Bitmap Heap Scan" => Some(Access::BitmapScan),
        "Seq Scan" => Some(Access::SeqScan),
        _ => None,
    }
}

/// PG names an expanded partition after its parent's alias (`ref_p2 ref`
/// when no alias was written); a user alias such as `item i` would have to
/// be followed by `_` in the table name to be mistaken for this.
fn alias_marks_partition(relation: &str, alias: Option<&str>) -> bool {
    alias.is_some_and(|a| {
        a != relation
            && relation
                .strip_prefix(a)
                .is_some_and(|rest| rest.starts_with('_'))
    })
}

fn children(node: &Value) -> impl Iterator<Item = &Value> {
    node.get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Any JSON number (PG 18 prints some counters with decimals).
fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// A non-negative counter; absent keys read as 0.
fn count(v: &Value, key: &str) -> u64 {
    num(v, key).map_or(0, |x| x.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    //! Fixtures are verbatim PostgreSQL 15.18 output; how each was produced
    //! is noted per test. Tests return `Result` so that a fixture failing to
    //! parse reports the parser's message instead of panicking.
    use super::*;

    fn summary(json: &str) -> Result<PlanSummary> {
        Ok(parse_explain(json)?.summary)
    }

    /// The tree as the reports draw it.
    fn drawn(json: &str) -> Result<String> {
        Ok(crate::report::plan_tree::draw(&parse_explain(json)?.tree))
    }

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../tests/fixtures/explain/", $name, ".json"))
        };
    }

    /// Covering `INCLUDE` index after VACUUM: the visibility map is all set.
    #[test]
    fn covering_index_after_vacuum_is_index_only_without_heap_fetches() -> Result<()> {
        let p = summary(fixture!("index_only_vacuumed"))?;
        assert_eq!(p.access, Access::IndexOnlyScan);
        assert_eq!(p.heap_fetches, 0);
        assert_eq!(p.index_names, ["ix_item_cat_cover"]);
        assert_eq!(p.signature, "Index Only Scan[ix_item_cat_cover]");
        assert_eq!(p.rows, 3000.0);
        assert_eq!(p.planning_ms, 1.144);
        assert_eq!(p.execution_ms, 1.471);
        assert_eq!((p.buffers.shared_hit, p.buffers.shared_read), (1, 18));
        assert_eq!(p.planning_buffers.shared_hit, 126);
        assert!(p.settings.is_empty() && !p.jit);
        Ok(())
    }

    /// Same query after an UPDATE cleared all-visible bits, before VACUUM.
    #[test]
    fn index_only_scan_before_vacuum_counts_heap_fetches() -> Result<()> {
        let p = summary(fixture!("index_only_heap_fetches"))?;
        assert_eq!(p.access, Access::IndexOnlyScan);
        assert_eq!(p.heap_fetches, 2000); // "Heap Fetches": 2000 in the JSON
        Ok(())
    }

    /// Inner Index Only Scan ran 4 times (3000 fetches for three category-7
    /// loops + 983 for category 8): PG prints the total, not the average.
    #[test]
    fn heap_fetches_are_totals_not_multiplied_by_loops() -> Result<()> {
        let p = summary(fixture!("nested_loop_index_only"))?;
        assert_eq!(p.heap_fetches, 3983);
        assert_eq!(p.rows, 12000.0);
        // Nested Loop's buffers equal its Index Only Scan child's: inclusive.
        assert_eq!(p.buffers.shared_hit, 1152);
        Ok(())
    }

    /// Inner Bitmap Heap Scan ran 4 times: removed-row counts are per-loop
    /// averages (1125 = 4500 / 4), heap block counts are totals.
    #[test]
    fn per_loop_counters_are_multiplied_and_block_totals_are_not() -> Result<()> {
        let p = summary(fixture!("nested_loop_bitmap"))?;
        assert_eq!(p.rows_removed_by_filter, 1125 * 4);
        assert_eq!(p.rows_removed_by_recheck, 123_972 * 4);
        assert_eq!((p.exact_heap_blocks, p.lossy_heap_blocks), (3775, 8276));
        assert_eq!(p.access, Access::BitmapScan);
        Ok(())
    }

    /// `SET work_mem = '64kB'` makes the bitmap lossy.
    #[test]
    fn bitmap_scan_with_small_work_mem_reports_lossy_blocks() -> Result<()> {
        let p = summary(fixture!("bitmap_lossy"))?;
        assert_eq!(p.access, Access::BitmapScan);
        assert_eq!(p.lossy_heap_blocks, 2069);
        assert_eq!(p.exact_heap_blocks, 931);
        assert_eq!(p.rows_removed_by_recheck, 123_844);
        assert_eq!(p.rows_removed_by_filter, 600);
        assert_eq!(
            p.signature,
            "Bitmap Heap Scan > Bitmap Index Scan[ix_item_category]"
        );
        let keys: Vec<&str> = p.settings.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert!(p.settings.contains(&("work_mem".into(), "64kB".into())));
        Ok(())
    }

    /// Same SELECT as `index_only_vacuumed`, with index scans disabled.
    #[test]
    fn seq_scan_signature_differs_from_index_scan() -> Result<()> {
        let seq = summary(fixture!("seq_scan_filter"))?;
        let idx = summary(fixture!("index_only_vacuumed"))?;
        assert_eq!(seq.access, Access::SeqScan);
        assert_eq!(seq.signature, "Seq Scan");
        assert_ne!(seq.signature, idx.signature);
        assert_eq!(seq.rows_removed_by_filter, 297_000);
        assert!(seq.index_names.is_empty());
        Ok(())
    }

    #[test]
    fn signature_is_identical_across_runs() -> Result<()> {
        let a = summary(fixture!("index_only_vacuumed"))?;
        let b = summary(fixture!("index_only_vacuumed_run2"))?;
        assert_eq!(a.signature, b.signature);
        assert_ne!(a.execution_ms, b.execution_ms); // really two runs
        let a = summary(fixture!("ref_all_partitions"))?;
        let b = summary(fixture!("ref_all_partitions_run2"))?;
        assert_eq!(a.signature, b.signature);
        assert_ne!(a.buffers, b.buffers);
        Ok(())
    }

    /// `WHERE referenced_id = 4242` cannot prune the HASH(parent_key) table.
    #[test]
    fn cross_partition_query_scans_all_four_partitions() -> Result<()> {
        let p = summary(fixture!("ref_all_partitions"))?;
        assert_eq!(p.partitions_scanned, 4);
        assert_eq!(p.never_executed, 0);
        assert_eq!(
            p.signature,
            "Append > (Bitmap Heap Scan > Bitmap Index Scan[*_referenced_id_idx]) x4"
        );
        assert_eq!(p.index_names.len(), 4);
        assert_eq!(p.index_names[0], "ref_p0_referenced_id_idx");
        Ok(())
    }

    /// Plan-time pruning leaves one partition and PG drops the Append.
    #[test]
    fn single_partition_lookup_scans_one_partition() -> Result<()> {
        let p = summary(fixture!("ref_single_partition"))?;
        assert_eq!(p.partitions_scanned, 1);
        assert_eq!(p.access, Access::IndexScan);
        assert_eq!(p.signature, "Index Scan[*_parent_key_parent_id_id_idx]");
        assert_eq!(p.index_names, ["ref_p2_parent_key_parent_id_id_idx"]);
        // A plain table scanned under its own name is not a partition.
        let plain = summary(fixture!("index_only_vacuumed"))?;
        assert_eq!(plain.partitions_scanned, 0);
        Ok(())
    }

    /// `parent_key = (SELECT 2)`: pruned at run time, after the InitPlan.
    #[test]
    fn run_time_pruning_leaves_never_executed_scans() -> Result<()> {
        let p = summary(fixture!("ref_runtime_pruning"))?;
        assert_eq!(p.never_executed, 3);
        assert_eq!(p.partitions_scanned, 1);
        assert_eq!(p.subplans_removed, 0);
        assert_eq!(
            p.signature,
            "Append > (InitPlan Result, Index Scan[*_parent_key_parent_id_id_idx] x4)"
        );
        let tree = drawn(fixture!("ref_runtime_pruning"))?;
        assert_eq!(tree.matches("(never executed)").count(), 3);
        assert_eq!(tree.lines().count(), 6);
        Ok(())
    }

    /// Generic plan of `PREPARE q(smallint, bigint)`: pruned at executor
    /// start-up, so the pruned scans disappear and are only counted.
    #[test]
    fn generic_prepared_plan_reports_subplans_removed() -> Result<()> {
        let p = summary(fixture!("ref_generic_prepared"))?;
        assert_eq!(p.subplans_removed, 3);
        assert_eq!(p.partitions_scanned, 1);
        assert_eq!(
            p.settings,
            [("plan_cache_mode".into(), "force_generic_plan".into())]
        );
        Ok(())
    }

    #[test]
    fn merge_append_members_collapse() -> Result<()> {
        let p = summary(fixture!("ref_merge_append"))?;
        assert_eq!(p.partitions_scanned, 4);
        assert_eq!(p.access, Access::IndexOnlyScan);
        assert_eq!(
            p.signature,
            "Limit > Merge Append > Index Only Scan[*_parent_key_parent_id_id_idx] x4"
        );
        Ok(())
    }

    /// `BEGIN; EXPLAIN ANALYZE DELETE ...; ROLLBACK`.
    #[test]
    fn delete_is_a_modify_table_over_partitions() -> Result<()> {
        let p = summary(fixture!("delete_rollback"))?;
        assert_eq!(
            p.signature,
            "ModifyTable(Delete) > Append > (Bitmap Heap Scan > Bitmap Index Scan[*_referenced_id_idx]) x4"
        );
        assert_eq!(p.rows, 0.0); // no RETURNING
        assert_eq!(p.rows_affected, Some(42.0), "the rows the Append fed it");
        assert_eq!(p.partitions_scanned, 4);
        assert_eq!(p.exact_heap_blocks, 42);
        // ModifyTable's own counter (137) includes the Append's 53.
        assert_eq!(p.buffers.shared_hit, 137);
        Ok(())
    }

    /// `ORDER BY name <-> 'abc123' LIMIT 5` on a gist_trgm_ops index.
    #[test]
    fn knn_uses_the_gist_trigram_index() -> Result<()> {
        let ordered = summary(include_str!("../tests/fixtures/explain/knn_trgm.json"))?;
        assert!(
            ordered.index_ordered,
            "KNN index scan returns rows in distance order"
        );
        assert!(!ordered.relations.is_empty());
        let seq = summary(include_str!(
            "../tests/fixtures/explain/seq_scan_filter.json"
        ))?;
        assert!(!seq.index_ordered);
        let p = summary(fixture!("knn_trgm"))?;
        assert_eq!(p.access, Access::IndexScan);
        assert_eq!(p.index_names, ["ix_item_name_trgm"]);
        assert_eq!(p.signature, "Limit > Index Scan[ix_item_name_trgm]");
        assert_eq!(p.rows, 5.0);
        assert_eq!(p.rows_affected, None, "a query affects no rows");
        Ok(())
    }

    #[test]
    fn spilling_sort_reports_temp_blocks() -> Result<()> {
        let p = summary(fixture!("sort_spill"))?;
        assert_eq!(p.buffers.temp_written, 8135);
        assert_eq!(p.buffers.temp_read, 7492);
        assert_eq!(p.signature, "Sort > Seq Scan");
        Ok(())
    }

    /// Parallel costs set to 0; 2 workers + leader = 3 loops.
    #[test]
    fn parallel_seq_scan_reports_workers_and_includes_their_buffers() -> Result<()> {
        let p = summary(fixture!("parallel_seq_scan"))?;
        assert_eq!((p.workers_planned, p.workers_launched), (2, 2));
        assert_eq!(p.access, Access::SeqScan);
        assert_eq!(p.signature, "Aggregate > Gather > Parallel Seq Scan");
        // 99667 per loop x 3 loops; the true total is 299000 (rounding).
        assert_eq!(p.rows_removed_by_filter, 299_001);
        // 4935 = relpages of item: the top node includes the workers' reads.
        assert_eq!(p.buffers.shared_hit, 4935);
        Ok(())
    }

    #[test]
    fn timing_off_parses_without_node_times() -> Result<()> {
        let p = summary(fixture!("timing_off"))?;
        assert!(p.execution_ms > 0.0);
        assert!(!drawn(fixture!("timing_off"))?.contains("time="));
        assert_eq!(p.partitions_scanned, 4);
        let timed = summary(fixture!("ref_all_partitions"))?;
        assert_eq!(p.signature, timed.signature);
        assert!(drawn(fixture!("ref_all_partitions"))?.contains("time="));
        Ok(())
    }

    #[test]
    fn jit_section_is_detected() -> Result<()> {
        let p = summary(fixture!("jit"))?;
        assert!(p.jit);
        assert_eq!(p.signature, "HashAggregate > Index Scan[item_pkey]");
        assert!(!summary(fixture!("sort_spill"))?.jit);
        Ok(())
    }

    /// InitPlan under the top node: top has 891 hit / 16 read, the InitPlan
    /// 2 / 16. Adding them would count the 16 reads twice.
    #[test]
    fn buffers_come_from_top_node_without_double_counting_initplans() -> Result<()> {
        let p = summary(fixture!("initplan"))?;
        assert_eq!((p.buffers.shared_hit, p.buffers.shared_read), (891, 16));
        assert_eq!(p.access, Access::IndexOnlyScan);
        assert_eq!(
            p.signature,
            "Index Only Scan[ix_item_cat_cover] > InitPlan Result > InitPlan Limit \
             > Index Only Scan Backward[ix_item_cat_cover]"
        );
        Ok(())
    }

    /// Materialised CTE (InitPlan read by a CTE Scan) and a semi-join into
    /// the partitioned table where one partition is never probed.
    #[test]
    fn cte_and_join_plan_is_mixed() -> Result<()> {
        let p = summary(fixture!("cte_subplan"))?;
        // 134 = CTE Scan 53 (which ran the CTE) + Append 81: CTE included once.
        assert_eq!(p.buffers.shared_hit, 134);
        assert_eq!(p.access, Access::Mixed);
        assert_eq!((p.partitions_scanned, p.never_executed), (3, 1));
        assert_eq!(p.heap_fetches, 2);
        assert_eq!(p.rows_removed_by_filter, 1979);
        assert!(drawn(fixture!("cte_subplan"))?.contains("CTE Scan c"));
        Ok(())
    }

    #[test]
    fn plan_without_table_scan_has_no_access() -> Result<()> {
        let p = summary(fixture!("result_only"))?;
        assert_eq!(p.access, Access::None);
        assert_eq!(p.signature, "Result");
        assert!(p.index_names.is_empty());
        Ok(())
    }

    #[test]
    fn summary_round_trips_through_serde() -> Result<()> {
        let p = summary(fixture!("cte_subplan"))?;
        let back: PlanSummary = serde_json::from_str(&serde_json::to_string(&p)?)?;
        assert_eq!(back, p);
        Ok(())
    }

    /// `SET track_io_timing = on` output, then rewritten the way PG 17
    /// (renamed I/O timing keys) and PG 18 (fractional rows, Index Searches)
    /// print it: the summary must not change.
    #[test]
    fn newer_versions_keys_are_tolerated() -> Result<()> {
        // The fixture's reads were all cached (0.000 ms); give the top node some.
        let pg15 = &fixture!("io_timing").replacen(
            "\"I/O Read Time\": 0.000",
            "\"I/O Read Time\": 1.250",
            1,
        );
        assert!(pg15.contains("\"I/O Read Time\""));
        let pg18 = pg15
            .replace("\"I/O Read Time\"", "\"Shared I/O Read Time\"")
            .replace("\"I/O Write Time\"", "\"Shared I/O Write Time\"")
            .replace(
                "\"Actual Rows\": 1,",
                "\"Actual Rows\": 1.00, \"Index Searches\": 1,",
            );
        assert!(pg18.contains("\"Actual Rows\": 1.00") && pg18.contains("Shared I/O"));
        let (old, new) = (summary(pg15)?, summary(&pg18)?);
        assert_eq!(old, new);
        assert_eq!(
            old.io_read_ms, 1.25,
            "the read time is kept under either name"
        );
        assert_eq!(new.partitions_scanned, 1);
        Ok(())
    }

    #[test]
    fn malformed_json_is_an_error() {
        let full = fixture!("index_only_vacuumed");
        for bad in [&full[..full.len() / 2], "", "[]", "{}", "[{\"Plan\": 3}]"] {
            let err = summary(bad).err();
            assert!(err.is_some(), "accepted {bad:?}");
        }
        let msg = summary("[{").err().map(|e| e.to_string());
        assert_eq!(msg.as_deref(), Some("EXPLAIN output is not valid JSON"));
    }
}
