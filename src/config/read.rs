//! Reading typed values out of located [`Node`]s, with one-line located errors.
//!
//! Messages name what was expected. Only typed values (numbers, booleans, durations,
//! sizes, enumerations) are quoted back, and with the variables they were interpolated
//! from (`expected an integer, got "x" from ${REPLICAS}`); free text never is, as it may
//! come from the environment and be a secret.

use std::time::Duration;

use super::ConfigError;
use super::syntax;
use super::yaml::{Key, Kind, Loc, Node};

pub type Result<T> = std::result::Result<T, ConfigError>;

/// `file:line:column: key.path: message`.
pub fn fail(loc: &Loc, path: &str, msg: impl std::fmt::Display) -> ConfigError {
    if path.is_empty() {
        ConfigError(format!("{loc}: {msg}"))
    } else {
        ConfigError(format!("{loc}: {path}: {msg}"))
    }
}

/// `parent.key`.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `parent[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Collects warnings once each.
#[derive(Debug, Default)]
pub struct Warnings(pub Vec<String>);

impl Warnings {
    pub fn push(&mut self, msg: String) {
        if !self.0.contains(&msg) {
            self.0.push(msg);
        }
    }

    pub fn at(&mut self, loc: &Loc, path: &str, msg: &str) {
        self.push(fail(loc, path, msg).0);
    }
}

pub fn map<'a>(node: &'a Node, path: &str) -> Result<&'a [(Key, Node)]> {
    match &node.kind {
        Kind::Map(entries) => Ok(entries),
        _ => Err(fail(&node.loc, path, "expected a map")),
    }
}

/// A map, or null read as an empty map (`networks: {front: }`).
pub fn map_or_null<'a>(node: &'a Node, path: &str) -> Result<&'a [(Key, Node)]> {
    match &node.kind {
        Kind::Null => Ok(&[]),
        _ => map(node, path),
    }
}

pub fn seq<'a>(node: &'a Node, path: &str) -> Result<&'a [Node]> {
    match &node.kind {
        Kind::Seq(items) => Ok(items),
        _ => Err(fail(&node.loc, path, "expected a list")),
    }
}

/// A scalar as text: strings as they are, numbers in decimal, booleans as `true`/`false`.
pub fn scalar_text(node: &Node) -> Option<String> {
    match &node.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Int(i) => Some(i.to_string()),
        Kind::Float(f) => Some(f.to_string()),
        Kind::Bool(b) => Some(b.to_string()),
        Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
    }
}

/// A string; numbers are accepted as their decimal text where the caller allows them
/// (service keys compose types as strings refuse them first, see `service.rs`).
pub fn string(node: &Node, path: &str) -> Result<String> {
    match &node.kind {
        Kind::Str(s) => Ok(s.clone()),
        Kind::Int(_) | Kind::Float(_) => Ok(scalar_text(node).unwrap_or_default()),
        _ => Err(fail(&node.loc, path, "expected a string")),
    }
}

pub fn opt_string(node: &Node, path: &str) -> Result<Option<String>> {
    match &node.kind {
        Kind::Null => Ok(None),
        _ => string(node, path).map(Some),
    }
}

/// A typed value that does not fit: what was expected, the value when it is a scalar,
/// and the variables it was interpolated from.
pub fn bad(node: &Node, path: &str, expected: impl std::fmt::Display) -> ConfigError {
    let mut msg = expected.to_string();
    if let Some(v) = scalar_text(node) {
        let shown: String = v.chars().take(40).collect();
        let more = if shown.len() < v.len() { "..." } else { "" };
        msg.push_str(&format!(", got {shown:?}{more}"));
    } else {
        let what = match node.kind {
            Kind::Null => "nothing",
            Kind::Seq(_) => "a list",
            _ => "a map",
        };
        msg.push_str(&format!(", got {what}"));
    }
    if !node.vars.is_empty() {
        let vars: Vec<String> = node.vars.iter().map(|v| format!("${{{v}}}")).collect();
        msg.push_str(&format!(" from {}", vars.join(" and ")));
    }
    fail(&node.loc, path, msg)
}

/// An integer; interpolated text like `"3"` is accepted.
pub fn int(node: &Node, path: &str) -> Result<i64> {
    match &node.kind {
        Kind::Int(i) => Ok(*i),
        Kind::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| bad(node, path, "expected an integer")),
        _ => Err(bad(node, path, "expected an integer")),
    }
}

pub fn u32_(node: &Node, path: &str) -> Result<u32> {
    let i = int(node, path)?;
    u32::try_from(i).map_err(|_| bad(node, path, "expected a non-negative integer"))
}

pub fn u16_(node: &Node, path: &str, what: &str) -> Result<u16> {
    let i = int(node, path)?;
    u16::try_from(i)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad(node, path, format!("expected {what}")))
}

/// A number (`cpus: 0.5`, `"1.5"`).
pub fn float(node: &Node, path: &str) -> Result<f64> {
    match &node.kind {
        Kind::Int(i) => Ok(*i as f64),
        Kind::Float(f) => Ok(*f),
        Kind::Str(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| bad(node, path, "expected a number")),
        _ => Err(bad(node, path, "expected a number")),
    }
}

/// A boolean. Like compose, interpolated or quoted `true`/`false`, `yes`/`no`, `y`/`n` and
/// `on`/`off` (any case) are cast.
pub fn boolean(node: &Node, path: &str) -> Result<bool> {
    match &node.kind {
        Kind::Bool(b) => Ok(*b),
        Kind::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(true),
            "false" | "no" | "n" | "off" => Ok(false),
            _ => Err(bad(node, path, "expected true or false")),
        },
        _ => Err(bad(node, path, "expected true or false")),
    }
}

pub fn opt_boolean(node: &Node, path: &str) -> Result<Option<bool>> {
    match &node.kind {
        Kind::Null => Ok(None),
        _ => boolean(node, path).map(Some),
    }
}

/// A Compose duration (`1m30s`, see [`syntax::parse_duration`]). Like compose, a number
/// without a unit is refused, written as a number or as a string.
pub fn duration(node: &Node, path: &str) -> Result<Duration> {
    match &node.kind {
        Kind::Str(s) => syntax::parse_duration(s).map_err(|m| bad(node, path, m)),
        Kind::Int(_) | Kind::Float(_) => Err(bad(
            node,
            path,
            format!("{} (a number needs a unit)", syntax::DURATION_HINT),
        )),
        _ => Err(bad(node, path, syntax::DURATION_HINT)),
    }
}

/// A byte size like compose's: `512m`, `1g`, `1.5GB`, `1024` (bytes), `2k`.
pub fn size(node: &Node, path: &str) -> Result<i64> {
    match &node.kind {
        Kind::Int(i) if *i >= 0 => Ok(*i),
        Kind::Str(s) => syntax::parse_size(s).map_err(|m| bad(node, path, m)),
        _ => Err(bad(node, path, "expected a size like 512m or 1g")),
    }
}

pub fn opt_size(node: &Node, path: &str) -> Result<Option<i64>> {
    match &node.kind {
        Kind::Null => Ok(None),
        _ => size(node, path).map(Some),
    }
}

/// One of `choices`, quoting the value back when it is not.
pub fn choice(node: &Node, path: &str, choices: &[&str]) -> Result<String> {
    let s = match &node.kind {
        Kind::Str(s) => s.clone(),
        _ => String::new(),
    };
    if choices.contains(&s.as_str()) {
        return Ok(s);
    }
    let list = match choices {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    Err(bad(node, path, format!("expected {list}")))
}

pub fn opt_duration(node: &Node, path: &str) -> Result<Option<Duration>> {
    match &node.kind {
        Kind::Null => Ok(None),
        _ => duration(node, path).map(Some),
    }
}

/// A list of strings, or one string: split into words like a shell when `split` is true,
/// else a one-element list.
pub fn string_or_list(node: &Node, path: &str, split: bool) -> Result<Vec<String>> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| string(n, &index(path, i)))
            .collect(),
        Kind::Str(s) if split => syntax::shell_split(s).map_err(|m| fail(&node.loc, path, m)),
        Kind::Str(s) => Ok(vec![s.clone()]),
        _ => Err(fail(
            &node.loc,
            path,
            "expected a string or a list of strings",
        )),
    }
}

/// One entry of a "map or list" key: name and value (`None`: no value).
pub struct Entry {
    pub key: String,
    pub value: Option<String>,
}

/// `{KEY: value}` or `["KEY=value", "KEY"]`. Map values may be strings, numbers,
/// booleans or null.
pub fn map_or_list(node: &Node, path: &str) -> Result<Vec<Entry>> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                if k.name.is_empty() {
                    return Err(fail(&k.loc, path, "a key cannot be empty"));
                }
                let value = match &v.kind {
                    Kind::Null => None,
                    _ => Some(scalar_text(v).ok_or_else(|| {
                        fail(
                            &v.loc,
                            &child(path, &k.name),
                            "expected a string, number, boolean or null",
                        )
                    })?),
                };
                Ok(Entry {
                    key: k.name.clone(),
                    value,
                })
            })
            .collect(),
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let s = match &n.kind {
                    Kind::Str(s) => s.clone(),
                    _ => return Err(fail(&n.loc, &index(path, i), "expected KEY=VALUE or KEY")),
                };
                let (key, value) = match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (s, None),
                };
                if key.is_empty() {
                    return Err(fail(&n.loc, &index(path, i), "expected KEY=VALUE or KEY"));
                }
                Ok(Entry { key, value })
            })
            .collect(),
        _ => Err(fail(&node.loc, path, "expected a map or a list")),
    }
}

/// [`map_or_list`] as a map of strings; a key without a value maps to an empty string.
pub fn string_map(node: &Node, path: &str) -> Result<std::collections::BTreeMap<String, String>> {
    Ok(map_or_list(node, path)?
        .into_iter()
        .map(|e| (e.key, e.value.unwrap_or_default()))
        .collect())
}

/// Names given as a list (`[a, b]`) or as the keys of a map (`{a: ..., b: ...}`), each with
/// its settings node (null for list entries).
pub fn names_with_settings<'a>(
    node: &'a Node,
    path: &str,
) -> Result<Vec<(String, Loc, Option<&'a Node>)>> {
    match &node.kind {
        Kind::Map(entries) => Ok(entries
            .iter()
            .map(|(k, v)| (k.name.clone(), k.loc.clone(), Some(v)))
            .collect()),
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.kind {
                Kind::Str(s) => Ok((s.clone(), n.loc.clone(), None)),
                _ => Err(fail(&n.loc, &index(path, i), "expected a name")),
            })
            .collect(),
        _ => Err(fail(&node.loc, path, "expected a list or a map")),
    }
}
