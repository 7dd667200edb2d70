//! `.env` and `env_file` files, read like Compose does.
//!
//! Supported: `KEY=VALUE`, `export KEY=VALUE`, `KEY` alone (no value), `#` comments
//! (whole line, or after whitespace in an unquoted value), blank lines, single quotes
//! (literal), double quotes (escapes `\n`, `\t`, `\\`, `\"` and `${VAR}` expansion,
//! may span lines), unquoted values (trimmed, `${VAR}`/`$VAR` expansion).
//! Expansion looks up keys defined earlier in the same file, then `lookup`.
//!
//! Values never appear in errors: they may be secrets.

use std::collections::HashMap;

/// Entries in file order; `None`: a key given without a value.
pub type Entries = Vec<(String, Option<String>)>;

/// Parse `text`, or return `(line, message)` for the first malformed line.
pub fn parse(text: &str, lookup: &HashMap<String, String>) -> Result<Entries, (usize, String)> {
    let mut out: Entries = Vec::new();
    let mut local: HashMap<String, String> = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let (key, raw) = match line.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err((lineno, "expected KEY=VALUE".into()));
        }
        let Some(raw) = raw else {
            out.push((key.to_string(), None));
            continue;
        };
        let raw = raw.trim_start();
        let value = if let Some(body) = raw.strip_prefix('\'') {
            match body.find('\'') {
                Some(end) => body[..end].to_string(),
                None => return Err((lineno, "unterminated single quote".into())),
            }
        } else if let Some(body) = raw.strip_prefix('"') {
            // A double-quoted value may continue on the following lines.
            let mut buf = body.to_string();
            let end = loop {
                if let Some(end) = closing_quote(&buf) {
                    break end;
                }
                if i >= lines.len() {
                    return Err((lineno, "unterminated double quote".into()));
                }
                buf.push('\n');
                buf.push_str(lines[i]);
                i += 1;
            };
            let unescaped = unescape(&buf[..end]);
            expand(&unescaped, &local, lookup)
        } else {
            let v = match raw.find(" #").or_else(|| raw.find("\t#")) {
                Some(c) => &raw[..c],
                None => raw,
            };
            expand(v.trim(), &local, lookup)
        };
        local.insert(key.to_string(), value.clone());
        out.push((key.to_string(), Some(value)));
    }
    Ok(out)
}

/// Index of the first unescaped `"` in `s`.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(c @ ('\\' | '"')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR`, `$$`.
fn expand(s: &str, local: &HashMap<String, String>, lookup: &HashMap<String, String>) -> String {
    let get = |k: &str| local.get(k).or_else(|| lookup.get(k)).cloned();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push_str(&rest[pos..]);
                return out;
            };
            let inner = &body[..end];
            let value = if let Some((name, def)) = inner.split_once(":-") {
                get(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(def.to_string())
            } else if let Some((name, def)) = inner.split_once('-') {
                get(name).unwrap_or(def.to_string())
            } else {
                get(inner).unwrap_or_default()
            };
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&get(&after[..len]).unwrap_or_default());
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<(String, Option<String>)> {
        let lookup = HashMap::from([("OUTER".to_string(), "out".to_string())]);
        parse(text, &lookup).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }

    #[test]
    fn forms() {
        let text = "# comment\n\nA=1\nexport B = two \nC='lit ${A}'\nD=\"q\\n${A}\"\nE=x # note\nF\nG=${OUTER}-$A-${NOPE:-d}\nH=\"multi\nline\"\nI=\n";
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
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let lookup = HashMap::new();
        assert_eq!(parse("A=1\nnot valid\n", &lookup).unwrap_err().0, 2);
        assert_eq!(parse("A='x\n", &lookup).unwrap_err().0, 1);
    }
}
