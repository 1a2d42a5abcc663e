//! Old plan → new plan, node by node: each tree as one line per node with only its shape
//! (node type, index, relation; no rows, times or costs), diffed line by line with the
//! `similar` crate (Myers' algorithm, as `diff` uses), so a reader sees which nodes went
//! and which came, in place.

use similar::{ChangeTag, TextDiff};

use crate::explain::PlanNode;

/// One line per node, indented by depth: what EXPLAIN's text format would show of the
/// node's shape.
pub fn shape_lines(tree: &PlanNode) -> Vec<String> {
    let mut lines = Vec::new();
    walk(tree, 0, &mut lines);
    lines
}

fn walk(node: &PlanNode, depth: usize, out: &mut Vec<String>) {
    let mut line = "  ".repeat(depth);
    if let Some(name) = &node.subplan {
        line.push_str(&format!("[{name}] "));
    }
    line.push_str(&node.label);
    if let Some(index) = &node.index {
        line.push_str(&format!(" using {index}"));
    }
    if let Some(relation) = &node.relation {
        line.push_str(&format!(" on {relation}"));
    }
    out.push(line);
    for child in &node.children {
        walk(child, depth + 1, out);
    }
}

/// A unified-diff-like text: `- ` for nodes only the old plan has, `+ ` for nodes only
/// the new one has, `  ` for nodes both have. Empty when the shapes are the same.
pub fn diff(old: &PlanNode, new: &PlanNode) -> String {
    let (old, new) = (shape_lines(old), shape_lines(new));
    if old == new {
        return String::new();
    }
    let old_refs: Vec<&str> = old.iter().map(String::as_str).collect();
    let new_refs: Vec<&str> = new.iter().map(String::as_str).collect();
    let diff = TextDiff::from_slices(&old_refs, &new_refs);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => "- ",
            ChangeTag::Insert => "+ ",
            ChangeTag::Equal => "  ",
        };
        out.push_str(sign);
        out.push_str(change.value());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(label: &str, index: Option<&str>, children: Vec<PlanNode>) -> PlanNode {
        PlanNode {
            label: label.into(),
            subplan: None,
            index: index.map(str::to_string),
            relation: Some("t".into()),
            alias: None,
            loops: Some(1.0),
            rows: Some(1.0),
            total_ms: None,
            shared_hit: 3,
            shared_read: 0,
            counters: Vec::new(),
            children,
        }
    }

    #[test]
    fn changed_nodes_are_marked_and_shared_ones_kept() {
        let old = node(
            "Aggregate",
            None,
            vec![node("Index Scan", Some("t_k"), Vec::new())],
        );
        let mut new = node(
            "Aggregate",
            None,
            vec![node("Index Only Scan", Some("t_cover"), Vec::new())],
        );
        new.children[0].rows = Some(99.0); // numbers are not shape
        let text = diff(&old, &new);
        assert_eq!(
            text,
            "  Aggregate on t\n-   Index Scan using t_k on t\n+   Index Only Scan using t_cover on t\n"
        );
        assert_eq!(diff(&old, &old), "");
        let mut same_shape = old.clone();
        same_shape.shared_hit = 1000;
        assert_eq!(diff(&old, &same_shape), "");
    }
}
