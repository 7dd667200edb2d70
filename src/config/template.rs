//! Compose's variable substitution, as compose-go's `template` package does it, for
//! Compose files, `.env` and `env_file` alike.
//!
//! - `$$` is a literal `$`; `$NAME` and `${NAME}` are the value, or empty when unset.
//! - `${NAME:-default}` (unset or empty), `${NAME-default}` (unset): the default.
//! - `${NAME:+alt}` (set and not empty), `${NAME+alt}` (set): the alternative, else the value.
//! - `${NAME:?message}` (unset or empty), `${NAME?message}` (unset): an error.
//! - Defaults, alternatives and messages are substituted in turn, so they nest
//!   (`${A:-${B:-x}/y}`); braces in them balance (`${A:-{"k":1}}`).
//! - Names are `[A-Za-z_][A-Za-z0-9_]*`. A `$` followed by anything else (a digit, a space,
//!   the end) is literal; `${` not followed by a name and `}` or an operator is an error.
//! - The operator is the first one right after the name: `${A-x:-y}` defaults to `x:-y`.

use std::fmt;

/// Why a template does not substitute. Neither variant carries the template itself,
/// which may hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `${` not followed by a name, or a name followed by something other than `}` or
    /// an operator.
    Invalid,
    /// `${NAME:?message}` or `${NAME?message}` on a missing value.
    Required { name: String, message: String },
    /// Defaults nested more than [`MAX_DEPTH`] deep (a bound, so that no input can
    /// exhaust the stack).
    TooDeep,
}

/// How deep defaults, alternatives and messages may nest.
pub const MAX_DEPTH: usize = 64;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid => f.write_str(
                "invalid interpolation: `${` must start a variable name (write `$$` for a \
                 literal `$`)",
            ),
            Error::TooDeep => write!(f, "interpolation nested more than {MAX_DEPTH} deep"),
            Error::Required { name, message } if message.is_empty() => {
                write!(f, "required variable {name} is missing a value")
            }
            Error::Required { name, message } => {
                write!(f, "required variable {name} is missing a value: {message}")
            }
        }
    }
}

/// Substitute every variable in `template`; `lookup` returns a variable's value, `None`
/// when it is not set.
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    substitute_at(template, lookup, 0)
}

fn substitute_at(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep);
    }
    let mut out = String::with_capacity(template.len());
    let b = template.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&template[copied..i]);
        match b.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(c) if is_name_start(*c) => {
                let n = name_len(&b[i + 1..]);
                let name = &template[i + 1..i + 1 + n];
                out.push_str(&lookup(name).unwrap_or_default());
                i += 1 + n;
            }
            Some(b'{') => {
                let (value, end) = braced(template, i, lookup, depth)?;
                out.push_str(&value);
                i = end;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
        copied = i;
    }
    out.push_str(&template[copied..]);
    Ok(out)
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn name_len(b: &[u8]) -> usize {
    b.iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .unwrap_or(b.len())
}

/// The `${...}` starting at `start` (the `$`): its value and the index after it.
fn braced(
    t: &str,
    start: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<(String, usize), Error> {
    let b = t.as_bytes();
    let name_at = start + 2;
    if !b.get(name_at).is_some_and(|c| is_name_start(*c)) {
        return Err(Error::Invalid);
    }
    let name_end = name_at + name_len(&b[name_at..]);
    let name = &t[name_at..name_end];
    if b.get(name_end) == Some(&b'}') {
        return Ok((lookup(name).unwrap_or_default(), name_end + 1));
    }
    // An operator: `:` optionally, then one of `-`, `+`, `?`.
    let (op, op_len) = match (b.get(name_end), b.get(name_end + 1)) {
        (Some(b':'), Some(c @ (b'-' | b'+' | b'?'))) => ((true, *c), 2),
        (Some(c @ (b'-' | b'+' | b'?')), _) => ((false, *c), 1),
        _ => return Err(Error::Invalid),
    };
    let body_at = name_end + op_len;
    // Compose's pattern ends the match at the last `}` on the line; the value ends at the
    // brace that balances the opening one within that match, or at that last `}`.
    let close = closing_brace(b, start, body_at).ok_or(Error::Invalid)?;
    let arg = &t[body_at..close];
    let (empty_counts, kind) = op;
    let value = lookup(name);
    let missing = match &value {
        None => true,
        Some(v) => empty_counts && v.is_empty(),
    };
    let out = match kind {
        b'-' if missing => substitute_at(arg, lookup, depth + 1)?,
        b'+' if !missing => substitute_at(arg, lookup, depth + 1)?,
        b'?' if missing => {
            return Err(Error::Required {
                name: name.to_string(),
                message: substitute_at(arg, lookup, depth + 1)?,
            });
        }
        _ => value.unwrap_or_default(),
    };
    Ok((out, close + 1))
}

/// The `}` ending the `${` at `start` whose argument begins at `body_at`: compose-go's
/// `getFirstBraceClosingIndex` (nested braces counted, the character after each `{`
/// skipped) within the line, else the line's last `}` after `body_at`. One pass, up to
/// that brace or the end of the line.
fn closing_brace(b: &[u8], start: usize, body_at: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut last = None;
    let mut i = start;
    while i < b.len() && b[i] != b'\n' {
        match b[i] {
            b'}' => {
                if i >= body_at {
                    last = Some(i);
                }
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'{' => {
                depth += 1;
                i += 1;
                match b.get(i) {
                    Some(b'\n') | None => break,
                    Some(b'}') if i >= body_at => last = Some(i),
                    _ => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    // The cases of compose-go's template tests, with their mapping.
    fn sub(t: &str) -> Result<String, Error> {
        let lookup = |k: &str| match k {
            "FOO" => Some("first".to_string()),
            "BAR" => Some(String::new()),
            "JSON" => Some(r#"{"json":2}"#.to_string()),
            _ => None,
        };
        substitute(t, &lookup)
    }

    fn ok(t: &str) -> String {
        sub(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    #[test]
    fn escapes_and_literal_dollars() {
        assert_eq!(ok("$${foo}"), "${foo}");
        assert_eq!(ok("foo"), "foo");
        for t in ["a $ string", "^REGEX$", "$}", "$", "$1", "price: 5$"] {
            assert_eq!(ok(t), t);
        }
    }

    #[test]
    fn invalid_templates() {
        for t in [
            "${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}", "${1}", "${A:-x",
        ] {
            assert_eq!(sub(t), Err(Error::Invalid), "{t}");
        }
    }

    #[test]
    fn plain_values() {
        assert_eq!(ok("$FOO-bar"), "first-bar");
        assert_eq!(ok("This ${missing} var"), "This  var");
        assert_eq!(ok("This ${BAR} var"), "This  var");
        assert_eq!(ok("This ${FOO} var"), "This first var");
        assert_eq!(ok("${FOO}${FOO}$FOO"), "firstfirstfirst");
    }

    #[test]
    fn defaults_and_alternatives() {
        assert_eq!(ok("ok ${missing:-def}"), "ok def");
        assert_eq!(ok("ok ${missing-def}"), "ok def");
        assert_eq!(ok("ok ${BAR:-def}"), "ok def");
        assert_eq!(ok("ok ${BAR-def}"), "ok ");
        assert_eq!(ok("ok ${FOO:-def}"), "ok first");
        assert_eq!(ok("ok ${FOO:+alt}"), "ok alt");
        assert_eq!(ok("ok ${BAR:+alt}"), "ok ");
        assert_eq!(ok("ok ${BAR+alt}"), "ok alt");
        assert_eq!(ok("ok ${missing+alt}"), "ok ");
        assert_eq!(ok("ok ${missing:+alt}"), "ok ");
        assert_eq!(ok("ok ${BAR:-/non:-alphanumeric}"), "ok /non:-alphanumeric");
        assert_eq!(ok("${missing-x:-y}"), "x:-y");
    }

    #[test]
    fn outer_text_does_not_interfere() {
        assert_eq!(ok("-ok ${BAR:-defaultValue}"), "-ok defaultValue");
        assert_eq!(ok("+ok ${UNSET:-${BAR-defaultValue}}"), "+ok ");
        assert_eq!(ok(":-ok ${UNSET-defaultValue}"), ":-ok defaultValue");
        assert_eq!(ok(":?ok ${BAR-defaultValue}"), ":?ok ");
        assert_eq!(ok(":+ok ${BAR:-defaultValue}"), ":+ok defaultValue");
        assert_eq!(ok("?ok ${BAR:-defaultValue}"), "?ok defaultValue");
    }

    #[test]
    fn nesting() {
        assert_eq!(ok("ok ${UNSET_VAR-$FOO}"), "ok first");
        assert_eq!(ok("ok ${UNSET_VAR-${FOO}}"), "ok first");
        assert_eq!(ok("ok ${UNSET_VAR-${FOO} ${FOO}}"), "ok first first");
        assert_eq!(ok("ok ${BAR:-${FOO} ${FOO}}"), "ok first first");
        assert_eq!(ok("ok ${BAR+$FOO ${FOO:+second}}"), "ok first second");
        assert_eq!(ok("${missing:-${FOO}/nested}"), "first/nested");
        assert_eq!(ok("${missing:-${BAR:-${FOO}}}-${FOO}"), "first-first");
        assert_eq!(ok(r#"ok ${missing:-{"json":1}}"#), r#"ok {"json":1}"#);
        assert_eq!(ok(r#"ok ${JSON-{"json":1}}"#), r#"ok {"json":2}"#);
    }

    #[test]
    fn required_values() {
        let req = |name: &str, message: &str| {
            Err(Error::Required {
                name: name.into(),
                message: message.into(),
            })
        };
        assert_eq!(sub("not ok ${UNSET:?Mandatory}"), req("UNSET", "Mandatory"));
        assert_eq!(sub("not ok ${BAR:?empty}"), req("BAR", "empty"));
        assert_eq!(sub("${UNSET:?}"), req("UNSET", ""));
        assert_eq!(sub("${UNSET?unset}"), req("UNSET", "unset"));
        assert_eq!(sub("${UNSET?Var ${FOO}}"), req("UNSET", "Var first"));
        assert_eq!(ok("ok ${FOO:?err}"), "ok first");
        assert_eq!(ok("ok ${BAR?err}"), "ok ");
        assert_eq!(
            sub("${UNSET:?}").unwrap_err().to_string(),
            "required variable UNSET is missing a value"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| "${U:-".repeat(n) + "x" + &"}".repeat(n);
        assert_eq!(ok(&deep(MAX_DEPTH)), "x");
        assert_eq!(sub(&deep(MAX_DEPTH + 2)), Err(Error::TooDeep));
        assert_eq!(sub(&deep(100_000)), Err(Error::TooDeep));
    }

    #[test]
    fn long_lines_stay_linear() {
        let line = "${FOO:-x}-".repeat(50_000);
        let t = std::time::Instant::now();
        assert_eq!(ok(&line), "first-".repeat(50_000));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(ok("${missing:-{}}"), "{}");
        assert_eq!(ok("${missing:-a}b}"), "ab}");
    }

    #[test]
    fn an_operator_needs_its_brace_on_the_same_line() {
        assert_eq!(sub("${A:-x\n}"), Err(Error::Invalid));
        assert_eq!(ok("${FOO}\n}"), "first\n}");
    }
}
