//! YAML through serde-saphyr, a maintained parser that reports real positions
//! (serde_yaml is deprecated and archived): syntax and type errors carry the parser's
//! file:line:column, and [`Locator`] finds where a key sits, so a semantic error found
//! after parsing points at the key itself rather than at the first line mentioning it.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// Parse `source` (the text of `path`), or say `path:line:column: what is wrong`.
pub fn from_str<T: DeserializeOwned>(path: &Path, source: &str) -> Result<T, String> {
    serde_saphyr::from_str::<T>(source).map_err(|err| {
        let plain = err.without_snippet();
        if let Some(message) = budget_message(plain) {
            return format!("{}: {message}", path.display());
        }
        let message = message_of(plain);
        match plain.location().filter(|l| l.line() > 0) {
            Some(at) => {
                // Name the key whose value is wrong, and the value, when they can be found.
                let context = Locator::new(source)
                    .describe_at(at.line(), at.column())
                    .map(|(key, value)| match value {
                        Some(v) if !message.contains(&v) => {
                            format!("{key}: {message} (found {v:?})")
                        }
                        _ => format!("{key}: {message}"),
                    })
                    .unwrap_or(message);
                format!(
                    "{}:{}:{}: {context}",
                    path.display(),
                    at.line(),
                    at.column()
                )
            }
            None => format!("{}: {message}", path.display()),
        }
    })
}

/// A parsing limit the file breached (a YAML alias bomb: a few lines of anchors and
/// aliases that expand to billions of nodes), said in words with the line, instead of the
/// parser's debug struct.
fn budget_message(err: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach;
    // The breach is wrapped in the alias (and snippet) errors of where it was expanded.
    let mut err = err;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = err
    {
        err = error;
    }
    let serde_saphyr::Error::Budget { breach, location } = err else {
        return None;
    };
    let limits = serde_saphyr::Budget::default();
    let what = match breach {
        BudgetBreach::Nodes { .. } => format!(
            "the file expands to more than {} nodes (YAML aliases)",
            limits.max_nodes
        ),
        BudgetBreach::Events { .. } => format!(
            "the file expands to more than {} parser events (YAML aliases)",
            limits.max_events
        ),
        BudgetBreach::Aliases { .. } => {
            format!("the file has more than {} aliases", limits.max_aliases)
        }
        BudgetBreach::Anchors { .. } => {
            format!("the file has more than {} anchors", limits.max_anchors)
        }
        BudgetBreach::Depth { .. } => {
            format!("the file nests deeper than {} levels", limits.max_depth)
        }
        BudgetBreach::ScalarBytes { .. } => format!(
            "the file's values add up to more than {} MiB of text",
            limits.max_total_scalar_bytes >> 20
        ),
        _ => "the file is larger or expands further than a YAML file pgx reads may".to_string(),
    };
    Some(if location.line() > 0 {
        format!("{what}; at line {}", location.line())
    } else {
        what
    })
}

/// The error's text without the location the parser appends (pgx puts it in front).
fn message_of(err: &serde_saphyr::Error) -> String {
    let text = err.to_string();
    let text = text.lines().next().unwrap_or_default().trim().to_string();
    // "... at line 3 column 5" is said by the prefix already.
    match text.rfind(" at line ") {
        Some(i) if text[i..].contains("column") => text[..i].to_string(),
        _ => text,
    }
}

/// Where the keys and items of a YAML document are, for errors found after parsing.
pub struct Locator {
    root: Option<Spanned<Tree>>,
}

impl Locator {
    pub fn new(source: &str) -> Locator {
        // `.inf` and `.nan` are values like any other here (an error about one must find
        // its key).
        let mut options = serde_saphyr::Options::default();
        options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
        Locator {
            root: serde_saphyr::from_str_with_options::<Spanned<Tree>>(source, options).ok(),
        }
    }

    /// Line and column of the deepest part of `path` that exists: a mapping key (the key
    /// itself, not its value) or a sequence item given by its index.
    pub fn find(&self, path: &[&str]) -> Option<(u64, u64)> {
        let mut node = self.root.as_ref()?;
        let mut at: Option<Location> = None;
        for part in path {
            match &node.value {
                Tree::Map(entries) => {
                    let Some((_, key_at, value)) = entries.iter().find(|(k, _, _)| k == part)
                    else {
                        break;
                    };
                    at = Some(*key_at);
                    node = value;
                }
                Tree::Seq(items) => {
                    let Some(item) = part.parse::<usize>().ok().and_then(|i| items.get(i)) else {
                        break;
                    };
                    at = Some(item.referenced);
                    node = item;
                }
                Tree::Scalar(_) => break,
            }
        }
        at.filter(|l| l.line() > 0).map(|l| (l.line(), l.column()))
    }

    /// The dotted key path of the value at a position, and the value if it is a scalar.
    pub fn describe_at(&self, line: u64, column: u64) -> Option<(String, Option<String>)> {
        fn walk(
            node: &Spanned<Tree>,
            path: &mut Vec<String>,
            line: u64,
            column: u64,
        ) -> Option<(String, Option<String>)> {
            let here =
                |n: &Spanned<Tree>| n.referenced.line() == line && n.referenced.column() == column;
            match &node.value {
                Tree::Map(entries) => {
                    for (key, key_at, value) in entries {
                        path.push(key.clone());
                        let at_key = key_at.line() == line && key_at.column() == column;
                        if here(value) || at_key {
                            let scalar = match &value.value {
                                Tree::Scalar(text) if !at_key => text.clone(),
                                _ => None,
                            };
                            return Some((path.join("."), scalar));
                        }
                        if let Some(found) = walk(value, path, line, column) {
                            return Some(found);
                        }
                        path.pop();
                    }
                    None
                }
                Tree::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push(i.to_string());
                        if here(item) {
                            let scalar = match &item.value {
                                Tree::Scalar(text) => text.clone(),
                                _ => None,
                            };
                            return Some((path.join("."), scalar));
                        }
                        if let Some(found) = walk(item, path, line, column) {
                            return Some(found);
                        }
                        path.pop();
                    }
                    None
                }
                Tree::Scalar(_) => None,
            }
        }
        walk(self.root.as_ref()?, &mut Vec::new(), line, column)
    }
}

/// A document's shape with the position of every key and item; values are not kept.
enum Tree {
    Map(Vec<(String, Location, Spanned<Tree>)>),
    Seq(Vec<Spanned<Tree>>),
    /// Its text, for error messages (None for null).
    Scalar(Option<String>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Spanned<Tree>>()?;
            entries.push((key.value.0, key.referenced, value));
        }
        Ok(Tree::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Scalar(Some(v.to_string())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Scalar(Some(v.to_string())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Scalar(Some(v.to_string())))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Tree, E> {
        Ok(Tree::Scalar(Some(v.to_string())))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Tree, E> {
        Ok(Tree::Scalar(Some(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::Scalar(Some(v.to_string())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Scalar(Some(v.to_string())))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Tree, E> {
        Ok(Tree::Scalar(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

/// A mapping key as text, whatever scalar it is.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(KeyText(String::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(KeyText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nvariants:\n  a: {}\n  b:\n    sql: SELECT 1\nqueries:\n  q:\n    variants: [a, zz]\n";

    #[test]
    fn keys_and_items_are_found_where_they_are() {
        let at = Locator::new(DOC);
        assert_eq!(at.find(&["name"]), Some((1, 1)));
        assert_eq!(at.find(&["variants", "b"]), Some((4, 3)));
        assert_eq!(at.find(&["variants", "b", "sql"]), Some((5, 5)));
        assert_eq!(at.find(&["queries", "q", "variants", "1"]), Some((8, 19)));
        // The deepest part that exists.
        assert_eq!(at.find(&["variants", "nope"]), Some((2, 1)));
        assert_eq!(at.find(&["nope"]), None);
        assert_eq!(
            at.describe_at(8, 19),
            Some(("queries.q.variants.1".to_string(), Some("zz".to_string())))
        );
    }

    #[test]
    fn an_alias_bomb_is_said_in_words_with_its_line() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = from_str::<serde_json::Value>(Path::new("bomb.yaml"), &doc).unwrap_err();
        assert!(
            err.starts_with(
                "bomb.yaml: the file expands to more than 250000 nodes (YAML aliases); at line "
            ),
            "{err}"
        );
        assert!(!err.contains('{') && !err.contains("Nodes"), "{err}");
    }

    #[test]
    fn non_finite_values_are_located() {
        let at = Locator::new("dataset:\n  scale: .inf\n");
        assert_eq!(at.find(&["dataset", "scale"]), Some((2, 3)));
    }

    #[test]
    fn syntax_errors_carry_file_line_and_column() {
        let err = from_str::<serde_json::Value>(Path::new("f.yaml"), "a: [1\nb: 2\n").unwrap_err();
        assert!(
            regex::Regex::new(r"^f\.yaml:\d+:\d+: ")
                .unwrap()
                .is_match(&err),
            "{err}"
        );
    }
}
