//! `.env` and `env_file` files, read like compose-go's `dotenv` package does.
//!
//! - `KEY=VALUE`, `KEY: VALUE`, `export KEY=VALUE`; a `KEY` alone takes its value from
//!   the lookup (the process environment), or is left unset.
//! - `#` starts a comment at the start of a line, or after a space in an unquoted value.
//! - Unquoted values run to the end of the line, trimmed; single-quoted values are literal
//!   (`\'` is a quote); double-quoted values may span lines and understand `\n`, `\t`,
//!   `\r`, `\a`, `\b`, `\f`, `\v`, `\\`, `\"`, `\$` and octal `\0NNN`.
//! - Unquoted and double-quoted values are substituted with the same engine as Compose
//!   files ([`super::template`]: every operator, nesting). A variable is looked up in the
//!   lookup first (the process environment wins), then among the keys read so far.
//!
//! Values never appear in errors: they may be secrets.

use std::collections::HashMap;

use super::template;

/// Entries in file order; `None`: a key given without a value that the lookup lacks.
pub type Entries = Vec<(String, Option<String>)>;

/// Parse `text`. Variables resolve through `lookup`, then through `vars`, which holds the
/// keys read before (earlier files) and receives every key this file sets. Returns the
/// entries in file order, or `(line, message)` for the first malformed one.
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    vars: &mut HashMap<String, String>,
) -> Result<Entries, (usize, String)> {
    let src = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Entries = Vec::new();
    let mut pos = 0;
    while let Some(start) = next_statement(src, pos) {
        // A statement's key and value start on its first line, so errors name that line.
        let line = src[..start].matches('\n').count() + 1;
        let stmt = without_export(&src[start..]);
        let stmt_at = src.len() - stmt.len();
        let (key, after) = key(stmt).map_err(|m| (line, m))?;
        let key = key.to_string();
        let (value, next) = match after {
            // `KEY` alone: inherited.
            After::Alone(end) => (lookup(&key), stmt_at + end),
            After::Value(at) => {
                let rest = stmt[at..].trim_start_matches(is_space);
                let get = |k: &str| lookup(k).or_else(|| vars.get(k).cloned());
                let expand = |s: &str| template::substitute(s, &get).map_err(|e| e.to_string());
                let (value, len) = value(rest, &expand).map_err(|m| (line, m))?;
                (Some(value), src.len() - rest.len() + len)
            }
        };
        if let Some(v) = &value {
            vars.insert(key.clone(), v.clone());
        }
        out.push((key, value));
        pos = next;
    }
    Ok(out)
}

/// Where the next statement starts, at `pos` or after: past blank space and comment
/// lines. `None`: the text ends first.
fn next_statement(src: &str, mut pos: usize) -> Option<usize> {
    loop {
        pos += src[pos..].find(|c: char| !c.is_whitespace())?;
        if !src[pos..].starts_with('#') {
            return Some(pos);
        }
        pos += src[pos..].find('\n')?;
    }
}

/// The statement without a leading `export` (followed by a space or tab).
fn without_export(stmt: &str) -> &str {
    match stmt.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start_matches(is_space),
        _ => stmt,
    }
}

/// How a statement goes on after its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// `=` or `:`, and the value from this offset.
    Value(usize),
    /// Nothing: the key alone runs to this offset (its line break, or the end).
    Alone(usize),
}

/// The key at the start of `stmt`: up to `=`, `:` or the end of the line, trailing space
/// trimmed; letters, digits and `_ . - [ ]`, no space inside.
fn key(stmt: &str) -> Result<(&str, After), String> {
    let mut key_end = stmt.len();
    let mut after = After::Alone(stmt.len());
    for (i, c) in stmt.char_indices() {
        match c {
            '=' | ':' => {
                key_end = i;
                after = After::Value(i + 1);
                break;
            }
            '\n' => {
                key_end = i;
                after = After::Alone(i);
                break;
            }
            c if is_space(c) => {}
            '_' | '.' | '-' | '[' | ']' => {}
            c if c.is_alphanumeric() => {}
            c => return Err(format!("unexpected character {c:?} in a variable name")),
        }
    }
    let key = stmt[..key_end].trim_end();
    if key.is_empty() {
        return Err("expected KEY=VALUE".into());
    }
    if key.contains(' ') {
        return Err("a key cannot contain a space".into());
    }
    Ok((key, after))
}

/// The value at the start of `rest` and its length there. Quoted values may span lines:
/// double-quoted ones are unescaped and then substituted with `expand`, single-quoted
/// ones are literal. An unquoted value runs to the end of the line or a ` #` comment,
/// trimmed, and is substituted.
fn value(
    rest: &str,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(String, usize), String> {
    match rest.as_bytes().first() {
        Some(&q @ (b'"' | b'\'')) => {
            let (body, len) = quoted(rest, q as char).ok_or("unterminated quoted value")?;
            let value = if q == b'"' {
                expand(&unescape(&body))?
            } else {
                body
            };
            Ok((value, len))
        }
        _ => {
            let end = rest.find('\n').unwrap_or(rest.len());
            let v = &rest[..end];
            let v = v.split_once(" #").map_or(v, |(v, _)| v).trim_end();
            Ok((expand(v)?, end))
        }
    }
}

/// Space that is not a line break (compose-go's `isSpace`).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// The body of the quoted value at the start of `s` (escaped quotes unescaped, other
/// backslashes kept) and the length up to and including the closing quote.
fn quoted(s: &str, quote: char) -> Option<(String, usize)> {
    let mut body = String::new();
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if c != quote {
            if !escaped && c == '\\' {
                escaped = true;
                continue;
            }
            if escaped {
                escaped = false;
                body.push('\\');
            }
            body.push(c);
            continue;
        }
        if escaped {
            escaped = false;
            body.push(c);
            continue;
        }
        return Some((body, i + 1));
    }
    None
}

/// Shell escapes in a double-quoted value; `\$` becomes `$$` so it stays literal through
/// substitution. Unknown escapes are kept as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let mut chars = after.chars();
        let (text, used): (String, usize) = match chars.next() {
            Some('a') => ("\u{7}".into(), 1),
            Some('b') => ("\u{8}".into(), 1),
            Some('f') => ("\u{c}".into(), 1),
            Some('n') => ("\n".into(), 1),
            Some('r') => ("\r".into(), 1),
            Some('t') => ("\t".into(), 1),
            Some('v') => ("\u{b}".into(), 1),
            Some('$') => ("$$".into(), 1),
            Some('"') => ("\"".into(), 1),
            Some('\\') => ("\\".into(), 1),
            Some('0') => {
                let digits = after[1..]
                    .bytes()
                    .take(3)
                    .take_while(u8::is_ascii_digit)
                    .count();
                let octal = &after[1..1 + digits];
                match u8::from_str_radix(octal, 8) {
                    Ok(b) if digits == 3 => (char::from(b).to_string(), 1 + digits),
                    _ => (format!("\\0{octal}"), 1 + digits),
                }
            }
            Some(c) => (format!("\\{c}"), c.len_utf8()),
            None => ("\\".into(), 0),
        };
        out.push_str(&text);
        rest = &after[used..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str, env: &[(&str, &str)]) -> Result<Entries, (usize, String)> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(text, &|k| env.get(k).cloned(), &mut HashMap::new())
    }

    fn p(text: &str) -> Entries {
        with(text, &[("OUTER", "out")]).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }

    fn value(text: &str, env: &[(&str, &str)], key: &str) -> Option<String> {
        with(text, env)
            .unwrap()
            .into_iter()
            .rfind(|(k, _)| k == key)
            .and_then(|(_, v)| v)
    }

    #[test]
    fn forms() {
        let text = "# comment\n\nA=1\nexport B = two \nC='lit ${A}'\nD=\"q\\n${A}\"\nE=x # note\nF\nG=${OUTER}-$A-${NOPE:-d}\nH=\"multi\nline\"\nI=\nJ: yaml\nK=x#y\nOUTER\n";
        assert_eq!(
            p(text),
            vec![
                kv("A", "1"),
                kv("B", "two"),
                kv("C", "lit ${A}"),
                kv("D", "q\n1"),
                kv("E", "x"),
                ("F".to_string(), None),
                kv("G", "out-1-d"),
                kv("H", "multi\nline"),
                kv("I", ""),
                kv("J", "yaml"),
                kv("K", "x#y"),
                kv("OUTER", "out"),
            ]
        );
    }

    #[test]
    fn every_operator_and_nesting() {
        let env = [("BASE", "/srv"), ("EMPTY", "")];
        let v = |line: &str| value(&format!("X={line}\n"), &env, "X").unwrap();
        assert_eq!(v("${BASE:+set}"), "set");
        assert_eq!(v("${EMPTY:+set}"), "");
        assert_eq!(v("${EMPTY+set}"), "set");
        assert_eq!(v("${NOPE+set}"), "");
        assert_eq!(v("${MISSING:-${BASE}/nested}"), "/srv/nested");
        assert_eq!(v("${EMPTY-x}"), "");
        assert_eq!(v("${EMPTY:-x}"), "x");
        assert_eq!(v("${BASE:?need it}"), "/srv");
        assert_eq!(v("\"${MISSING:-${EMPTY:-${BASE}}}\""), "/srv");
        assert_eq!(v("'${BASE}'"), "${BASE}");
        assert_eq!(v("$$BASE"), "$BASE");
        assert_eq!(v("\"\\$BASE\""), "$BASE");
        let e = with("A=1\nX=${MISSING:?set it}\n", &env).unwrap_err();
        assert_eq!(
            e,
            (
                2,
                "required variable MISSING is missing a value: set it".into()
            )
        );
        assert!(with("X=${EMPTY?}\n", &env).is_ok());
        assert_eq!(with("X=${MISSING?}\n", &env).unwrap_err().0, 1);
        assert_eq!(with("\nX=${ bad}\n", &env).unwrap_err().0, 2);
    }

    #[test]
    fn the_process_environment_wins_over_earlier_keys() {
        let env = [("BASE", "/env")];
        let text = "BASE=/file\nX=${BASE}/x\nY=$OTHER\nOTHER=o\nZ=$OTHER\n";
        assert_eq!(value(text, &env, "X").unwrap(), "/env/x");
        assert_eq!(value(text, &env, "Y").unwrap(), "");
        assert_eq!(value(text, &env, "Z").unwrap(), "o");
        // Keys from earlier files count too.
        let mut vars = HashMap::from([("PRIOR".to_string(), "p".to_string())]);
        let e = parse("X=${PRIOR}\n", &|_| None, &mut vars).unwrap();
        assert_eq!(e, vec![kv("X", "p")]);
        assert_eq!(vars["X"], "p");
    }

    #[test]
    fn escapes() {
        let v = |line: &str| value(&format!("X={line}\n"), &[], "X").unwrap();
        assert_eq!(v(r#""a\tb\\c\"d""#), "a\tb\\c\"d");
        assert_eq!(v(r#""\0101\c""#), "A\\c");
        assert_eq!(v(r"'it\'s \n'"), "it's \\n");
        assert_eq!(v(r"plain\n"), "plain\\n");
        assert_eq!(v("\"x\" # comment"), "x");
    }

    #[test]
    fn statements_start_past_blank_space_and_comments() {
        assert_eq!(next_statement("  \n# c\n\tA=1", 0), Some(8));
        assert_eq!(next_statement("A=1\nB=2", 3), Some(4));
        assert_eq!(next_statement(" \n# only a comment", 0), None);
        assert_eq!(without_export("export\t A=1"), "A=1");
        assert_eq!(without_export("exported=1"), "exported=1");
    }

    #[test]
    fn a_key_ends_at_its_separator_or_its_line() {
        assert_eq!(key("A.b-c[0] = 1"), Ok(("A.b-c[0]", After::Value(10))));
        assert_eq!(key("K: v"), Ok(("K", After::Value(2))));
        assert_eq!(key("ALONE \nB=1"), Ok(("ALONE", After::Alone(6))));
        assert_eq!(key("LAST"), Ok(("LAST", After::Alone(4))));
        assert_eq!(key("=1"), Err("expected KEY=VALUE".into()));
        assert_eq!(key("A B=1"), Err("a key cannot contain a space".into()));
        assert!(key("A$=1").unwrap_err().contains("'$'"));
    }

    #[test]
    fn a_value_and_the_length_it_takes() {
        let upper = |s: &str| -> Result<String, String> { Ok(s.to_uppercase()) };
        assert_eq!(super::value("x y # c\nB=1", &upper), Ok(("X Y".into(), 7)));
        assert_eq!(super::value("'a\nb' # c", &upper), Ok(("a\nb".into(), 5)));
        assert_eq!(super::value("\"a\\tb\"\n", &upper), Ok(("A\tB".into(), 6)));
        assert_eq!(super::value("", &upper), Ok((String::new(), 0)));
        assert_eq!(
            super::value("'open\n", &upper),
            Err("unterminated quoted value".into())
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(with("A=1\nnot valid\n", &[]).unwrap_err().0, 2);
        assert_eq!(with("A=1\nB='x\n", &[]).unwrap_err().0, 2);
        assert_eq!(with("A=1\n\nB=\"x\n", &[]).unwrap_err().0, 3);
        assert_eq!(with("A=1\nB!=2\n", &[]).unwrap_err().0, 2);
        let e = with("PASS=secret value\nBAD KEY=hunter2\n", &[]).unwrap_err();
        assert_eq!(e.0, 2);
        assert!(
            !e.1.contains("hunter2") && !e.1.contains("secret"),
            "{}",
            e.1
        );
        assert!(with("\u{feff}A=1\n", &[]).is_ok());
    }
}
