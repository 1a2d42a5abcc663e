//! Plan trees drawn for people: one line per node, indented like EXPLAIN's text format,
//! with rows × loops, per-loop time when timed, buffers and the counters that are not zero.

use std::fmt::Write as _;

use crate::explain::PlanNode;

pub fn draw(tree: &PlanNode) -> String {
    let mut out = String::new();
    line(&mut out, tree, 0);
    out
}

fn line(out: &mut String, node: &PlanNode, depth: usize) {
    out.push_str(&"  ".repeat(depth));
    if let Some(name) = &node.subplan {
        let _ = write!(out, "[{name}] ");
    }
    out.push_str(&node.label);
    if let Some(index) = &node.index {
        let _ = write!(out, " using {index}");
    }
    if let Some(rel) = &node.relation {
        let _ = write!(out, " on {rel}");
    }
    if let Some(alias) = &node.alias {
        let _ = write!(out, " {alias}");
    }
    match node.loops {
        Some(l) if l <= 0.0 => out.push_str("  (never executed)"),
        Some(l) => {
            let _ = write!(
                out,
                "  rows={}x{}",
                number(node.rows.unwrap_or(0.0)),
                number(l)
            );
            if let Some(t) = node.total_ms {
                let _ = write!(out, " time={t:.3}ms");
            }
        }
        None => {}
    }
    let _ = write!(out, " hit={} read={}", node.shared_hit, node.shared_read);
    for (name, value) in &node.counters {
        let _ = write!(out, " {name}={value}");
    }
    out.push('\n');
    for child in &node.children {
        line(out, child, depth + 1);
    }
}

/// Whole numbers without decimals, others with two (PG 18 row averages).
fn number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
