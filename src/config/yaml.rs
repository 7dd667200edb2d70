//! The YAML boundary: text plus an environment in, a located [`Node`] tree out.
//!
//! This is the only file that knows which YAML crate is used. Interpolation
//! (`${VAR}`, `${VAR:-default}`, `$$`, ...) is [`super::template`]'s, the engine `.env`
//! files use too; it happens while the string scalars are read (values, never keys), so
//! every later step sees final values. Anchors, aliases and `<<` merge keys are expanded
//! by the parser.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// Where a node was written: file (as the user named it), 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// One YAML value with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub loc: Loc,
    /// Variables interpolated into this scalar as written (`${REPLICAS}`), so errors about
    /// the final value can say where it came from. Empty for most nodes.
    pub vars: Vec<String>,
    /// A relative path the loader made absolute against the directory of the file that
    /// wrote it (`include`, `extends`): still a path drover resolved, not one the user
    /// wrote absolute.
    pub rebased: bool,
}

/// A mapping key with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are unique (the parser rejects duplicates).
    Map(Vec<(Key, Node)>),
}

impl Node {
    /// A node without interpolated variables.
    pub fn new(kind: Kind, loc: Loc) -> Node {
        Node {
            kind,
            loc,
            vars: Vec::new(),
            rebased: false,
        }
    }

    /// The entry `key` of a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A parse failure: location (when the parser knows it), key path (when known), message.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub line: u64,
    pub column: u64,
    pub path: String,
    pub message: String,
}

/// Parse one YAML document. `env` feeds Compose-style interpolation; `None` disables it.
pub fn parse(
    file: &Arc<str>,
    text: &str,
    env: Option<&HashMap<String, String>>,
) -> Result<Node, ParseError> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        strict_booleans: true,
        // One `x-` anchor merged into hundreds of services is how large Compose files are
        // written; the alias and expansion caps still stop alias bombs.
        budget: serde_saphyr::budget! { enforce_alias_anchor_ratio: false },
        // Aliases expand at read time: bound the expansion so an alias bomb fails fast
        // instead of taking minutes and gigabytes (a real Compose file replays a few
        // hundred events).
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
        },
    };
    PATH.with(|p| p.borrow_mut().clear());
    FAILED_AT.with(|f| f.borrow_mut().take());
    ENV.with(|e| *e.borrow_mut() = env.cloned());
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |d| {
        Spanned::<Raw>::deserialize(d)
    });
    ENV.with(|e| e.borrow_mut().take());
    match result {
        Ok(raw) => {
            let src = Source::new(text, env.is_some());
            Ok(to_node(file, &src, raw))
        }
        Err(err) => {
            let (line, column) = err
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let message = err
                .without_snippet()
                .render_with_formatter(&serde_saphyr::UserMessageFormatter);
            Err(ParseError {
                line,
                column,
                path: FAILED_AT
                    .with(|f| f.borrow_mut().take())
                    .unwrap_or_default(),
                message: first_line_without_location(&message),
            })
        }
    }
}

/// The crate's rendered message may end with " at line L column C"; the caller prints
/// the location in front instead. Interpolation failures come worded by `template`.
fn first_line_without_location(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

fn loc_of(file: &Arc<str>, l: &Location) -> Loc {
    Loc {
        file: file.clone(),
        line: l.line(),
        column: l.column(),
    }
}

/// Values reached through an alias are located where the alias is used.
fn best(s: &Spanned<impl Sized>) -> &Location {
    if s.referenced == Location::UNKNOWN {
        &s.defined
    } else {
        &s.referenced
    }
}

/// The source text, to find which variables a scalar was interpolated from.
struct Source<'a> {
    /// Lines of the text; empty when interpolation is off.
    lines: Vec<&'a str>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str, interpolated: bool) -> Self {
        Source {
            lines: if interpolated && text.contains('$') {
                text.lines().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Variables referenced by the scalar written at `loc` (the rest of its line, up to
    /// a comment or, outside `${...}` and quotes, a flow separator).
    fn vars_at(&self, loc: &Location) -> Vec<String> {
        let Some(line) = (loc.line() as usize)
            .checked_sub(1)
            .and_then(|i| self.lines.get(i))
        else {
            return Vec::new();
        };
        let start = (loc.column() as usize).saturating_sub(1);
        let Some(rest) = line.get(start..).or_else(|| {
            // Columns count characters; fall back to a char-based slice.
            let idx = line.char_indices().nth(start).map(|(i, _)| i)?;
            line.get(idx..)
        }) else {
            return Vec::new();
        };
        if !rest.contains('$') {
            return Vec::new();
        }
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
        let body = if quote.is_some() { &rest[1..] } else { rest };
        let mut out = Vec::new();
        let bytes = body.as_bytes();
        let mut i = 0;
        let mut depth = 0usize;
        while i < bytes.len() {
            let c = bytes[i];
            if depth == 0 {
                match (quote, c) {
                    (Some(q), c) if c == q as u8 => break,
                    (None, b',' | b']' | b'}') => break,
                    (None, b'#') if i > 0 && bytes[i - 1] == b' ' => break,
                    _ => {}
                }
            }
            if c == b'}' && depth > 0 {
                depth -= 1;
                i += 1;
                continue;
            }
            if c != b'$' {
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'$') => i += 2,
                Some(b'{') => {
                    depth += 1;
                    i += 2;
                    let n = name_len(&body[i..]);
                    push_unique(&mut out, &body[i..i + n]);
                    i += n;
                }
                Some(_) => {
                    i += 1;
                    let n = name_len(&body[i..]);
                    push_unique(&mut out, &body[i..i + n]);
                    i += n;
                }
                None => i += 1,
            }
        }
        out
    }
}

fn name_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

fn push_unique(out: &mut Vec<String>, name: &str) {
    if !name.is_empty() && !out.iter().any(|n| n == name) {
        out.push(name.to_string());
    }
}

fn to_node(file: &Arc<str>, src: &Source, raw: Spanned<Raw>) -> Node {
    let loc = loc_of(file, best(&raw));
    let mut vars = Vec::new();
    let kind = match raw.value {
        Raw::Null => Kind::Null,
        Raw::Bool(b) => Kind::Bool(b),
        Raw::Int(i) => Kind::Int(i),
        Raw::Float(f) => Kind::Float(f),
        Raw::Str(s) => {
            vars = src.vars_at(&raw.defined);
            Kind::Str(s)
        }
        Raw::Seq(items) => Kind::Seq(items.into_iter().map(|i| to_node(file, src, i)).collect()),
        Raw::Map(entries) => Kind::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key {
                        loc: loc_of(file, best(&k)),
                        name: k.value.0,
                    };
                    (key, to_node(file, src, v))
                })
                .collect(),
        ),
    };
    Node {
        kind,
        loc,
        vars,
        rebased: false,
    }
}

thread_local! {
    /// The variables string scalars are interpolated with; `None`: no interpolation.
    static ENV: RefCell<Option<HashMap<String, String>>> = const { RefCell::new(None) };
    /// Key path of the value being read, for errors raised inside the parser.
    static PATH: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// The innermost path at which reading failed.
    static FAILED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn note_failure() {
    FAILED_AT.with(|f| {
        let mut f = f.borrow_mut();
        if f.is_none() {
            *f = Some(PATH.with(|p| join_path(&p.borrow())));
        }
    });
}

fn join_path(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        if !p.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(p);
    }
    out
}

/// A string scalar with its variables substituted, when interpolation is on.
fn interpolate<E: de::Error>(v: &str) -> Result<String, E> {
    if !v.contains('$') {
        return Ok(v.to_string());
    }
    ENV.with(|env| match &*env.borrow() {
        None => Ok(v.to_string()),
        Some(env) => super::template::substitute(v, &|k| env.get(k).cloned()).map_err(|e| {
            note_failure();
            E::custom(e)
        }),
    })
}

/// The parser's view of a value, before file names are attached.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<KeyText>, Spanned<Raw>)>),
}

/// A mapping key as text (YAML allows numbers and booleans as keys; Compose reads them as text).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(RawVisitor)? {
            Raw::Str(s) => Ok(KeyText(s)),
            Raw::Int(i) => Ok(KeyText(i.to_string())),
            Raw::Float(f) => Ok(KeyText(f.to_string())),
            Raw::Bool(b) => Ok(KeyText(b.to_string())),
            Raw::Null => Ok(KeyText(String::new())),
            Raw::Seq(_) | Raw::Map(_) => Err(de::Error::custom("a map key must be a scalar")),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Raw::Int(i)),
            Err(_) => Ok(Raw::Str(v.to_string())),
        }
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or_else(|_| Raw::Str(v.to_string()), Raw::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or_else(|_| Raw::Str(v.to_string()), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        interpolate(v).map(Raw::Str)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        if v.contains('$') {
            interpolate(&v).map(Raw::Str)
        } else {
            Ok(Raw::Str(v))
        }
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        String::from_utf8(v.to_vec())
            .map(Raw::Str)
            .map_err(|_| E::custom("binary data is not valid text"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        loop {
            PATH.with(|p| p.borrow_mut().push(format!("[{}]", items.len())));
            let next = seq.next_element::<Spanned<Raw>>();
            if next.is_err() {
                note_failure();
            }
            PATH.with(|p| p.borrow_mut().pop());
            match next? {
                Some(item) => items.push(item),
                None => return Ok(Raw::Seq(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        loop {
            let key = match map.next_key::<Spanned<KeyText>>() {
                Ok(Some(k)) => k,
                Ok(None) => return Ok(Raw::Map(entries)),
                Err(e) => {
                    note_failure();
                    return Err(e);
                }
            };
            PATH.with(|p| p.borrow_mut().push(key.value.0.clone()));
            let value = map.next_value::<Spanned<Raw>>();
            if value.is_err() {
                note_failure();
            }
            PATH.with(|p| p.borrow_mut().pop());
            entries.push((key, value?));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn p(text: &str, e: &[(&str, &str)]) -> Result<Node, ParseError> {
        parse(&Arc::from("c.yml"), text, Some(&env(e)))
    }

    #[test]
    fn locations_merge_keys_and_interpolation() {
        let text = "x-base: &base\n  image: a\n  env: {A: 1}\nservices:\n  web:\n    <<: *base\n    image: b\n    n: 0755\n    y: yes\n    s: ${X:-def}\n    t: $$HOME\n    u: \"$X\"\n    v: ${MISSING}\n    w: ${MISSING-dflt}\n";
        let n = p(text, &[("X", "ex")]).unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        let image = web.get("image").unwrap();
        assert_eq!(image.kind, Kind::Str("b".into()));
        assert_eq!((image.loc.line, image.loc.column), (7, 12));
        // Merged from the anchor; located where the alias is used.
        let env = web.get("env").unwrap();
        assert_eq!(env.get("A").unwrap().kind, Kind::Int(1));
        assert_eq!(env.loc.line, 6);
        assert_eq!(web.get("n").unwrap().kind, Kind::Str("0755".into()));
        assert_eq!(web.get("y").unwrap().kind, Kind::Str("yes".into()));
        assert_eq!(web.get("s").unwrap().kind, Kind::Str("ex".into()));
        assert_eq!(web.get("t").unwrap().kind, Kind::Str("$HOME".into()));
        assert_eq!(web.get("u").unwrap().kind, Kind::Str("ex".into()));
        assert_eq!(web.get("v").unwrap().kind, Kind::Str("".into()));
        assert_eq!(web.get("w").unwrap().kind, Kind::Str("dflt".into()));
        assert_eq!(web.get("s").unwrap().vars, vec!["X"]);
        assert!(web.get("t").unwrap().vars.is_empty(), "$$ is no variable");
        assert_eq!(web.get("u").unwrap().vars, vec!["X"]);
        assert!(image.vars.is_empty());
    }

    #[test]
    fn interpolation_forms_and_their_variables() {
        let e = [("A", "a"), ("E", ""), ("N", "3")];
        let v = |t: &str| {
            let n = p(&format!("x: {t}\n"), &e).unwrap();
            let x = n.get("x").unwrap().clone();
            (x.kind, x.vars)
        };
        let s = |x: &str| Kind::Str(x.to_string());
        assert_eq!(v("${U:-${A}}"), (s("a"), vec!["U".into(), "A".into()]));
        assert_eq!(v("${U:-${U2:-deep}}").0, s("deep"));
        assert_eq!(v("${A:+alt}").0, s("alt"));
        assert_eq!(v("${E:+alt}").0, s(""));
        assert_eq!(v("${E+alt}").0, s("alt"));
        assert_eq!(v("${U+alt}").0, s(""));
        assert_eq!(v("${A:+${N}x}").0, s("3x"));
        assert_eq!(v("$A-$N").0, s("a-3"));
        assert_eq!(v("'$$A'").0, s("$A"));
        assert_eq!(v("\"${A:-q}\"").0, s("a"));
        let n = p("x: [\"${N}\", \"$A\"]\n", &e).unwrap();
        let Kind::Seq(items) = &n.get("x").unwrap().kind else {
            panic!("not a list")
        };
        assert_eq!(items[0].vars, vec!["N"]);
        assert_eq!(items[1].vars, vec!["A"]);
        assert_eq!(v("pre-${U:-a b}-post # $C").0, s("pre-a b-post"));
        assert_eq!(v("pre-${U:-a b}-post # $C").1, vec!["U".to_string()]);
    }

    #[test]
    fn one_anchor_many_aliases() {
        let mut text = String::from("x-common: &common {image: busybox}\nservices:\n");
        for i in 0..400 {
            text.push_str(&format!("  s{i}:\n    <<: *common\n"));
        }
        let n = p(&text, &[]).unwrap();
        let s = n.get("services").unwrap().get("s399").unwrap();
        assert_eq!(s.get("image").unwrap().kind, Kind::Str("busybox".into()));
    }

    #[test]
    fn errors_are_located_with_paths() {
        let e = p("services:\n  web:\n    image: ${NEED:?set NEED}\n", &[]).unwrap_err();
        assert_eq!((e.line, e.column), (3, 12));
        assert_eq!(e.path, "services.web.image");
        assert!(e.message.contains("NEED"), "{}", e.message);
        let e = p("a: ${EMPTY:?must not be empty}\n", &[("EMPTY", "")]).unwrap_err();
        assert_eq!(
            e.message,
            "required variable EMPTY is missing a value: must not be empty"
        );
        // `?` without the colon accepts an empty value, not an unset one.
        let n = p("a: ${EMPTY?unset}\n", &[("EMPTY", "")]).unwrap();
        assert_eq!(n.get("a").unwrap().kind, Kind::Str("".into()));
        let e = p("a: x${GONE?unset}\n", &[]).unwrap_err();
        assert_eq!(
            e.message,
            "required variable GONE is missing a value: unset"
        );
        assert_eq!((e.line, e.column, e.path.as_str()), (1, 4, "a"));
        // A broken reference inside a value (a password, say) is not repeated.
        let e = p("a: \"pa${ss-word\"\n", &[]).unwrap_err();
        assert!(!e.message.contains("ss-word"), "{}", e.message);
        assert!(
            e.message.starts_with("invalid interpolation"),
            "{}",
            e.message
        );
        let e = p("services:\n  web: 1\n  web: 2\n", &[]).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }
}
