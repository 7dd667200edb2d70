#!/usr/bin/env bash
# List the functions in src/ longer than N lines (default 100), longest first:
#
#   scripts/long-functions.sh [N] [--no-tests] [PATH...]
#
# One line per function: `file:line  length  name`, where line is the line of its `fn`
# keyword and length counts from that line to the line of the body's closing brace.
# Functions in a `#[cfg(test)]` module or a `tests.rs` file are marked `(test)`;
# `--no-tests` leaves them out. PATHs (files or directories) default to src/.
#
# Braces are counted on the code only: comments (line, block, nested block, doc),
# string literals (with escapes, raw `r#"..."#`, byte and C strings) and character
# literals are skipped, and lifetimes are told from character literals. A nested `fn`
# is listed on its own and also counts in the lines of the function around it. `fn`
# declarations without a body (in traits) and `fn(..)` pointer types are not functions.
set -euo pipefail

limit=100
tests=1
paths=()
for a in "$@"; do
    case "$a" in
        --no-tests) tests=0 ;;
        -h | --help)
            sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *[!0-9]* | '') paths+=("$a") ;;
        *) limit=$a ;;
    esac
done
if [ ${#paths[@]} -eq 0 ]; then
    cd "$(dirname "$0")/.."
    paths=(src)
fi

python3 - "$limit" "$tests" "${paths[@]}" <<'PY'
import os
import sys

def tokens(text):
    """(kind, value, line) for the code of `text`: identifiers and single punctuation
    characters; comments, strings and character literals are skipped."""
    i, n, line = 0, len(text), 1
    def ident_at(j):
        return j < n and (text[j].isalnum() or text[j] == "_")
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1; i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth += 1; i += 2
                elif text.startswith("*/", i):
                    depth -= 1; i += 2
                else:
                    line += text[i] == "\n"; i += 1
        elif c == "\"":
            i += 1
            while i < n and text[i] != "\"":
                if text[i] == "\\":
                    i += 1
                line += i < n and text[i] == "\n"; i += 1
            i += 1
        elif c == "'":
            # A character literal (`'{'`, `'\\''`, `'\\u{7f}'`) or a lifetime or
            # label (`'a`, `'static`).
            if i + 1 < n and text[i + 1] == "\\":
                j = i + 3  # past the escaped character, which may be a quote
                while j < n and text[j] != "'":
                    j += 1
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                i += 3
            else:
                i += 1
        elif c.isalpha() or c == "_":
            j = i
            while ident_at(j):
                j += 1
            word = text[i:j]
            # Raw strings: r"..", r#".."#, br#".."#, cr#".."#.
            if word in ("r", "br", "cr") and j < n and text[j] in "#\"":
                k = j
                while k < n and text[k] == "#":
                    k += 1
                if k < n and text[k] == "\"":
                    close = "\"" + "#" * (k - j)
                    end = text.find(close, k + 1)
                    end = n if end < 0 else end + len(close)
                    line += text.count("\n", k, end)
                    i = end
                    continue
                if word == "r" and ident_at(k):  # a raw identifier: r#fn
                    j = k
                    while ident_at(j):
                        j += 1
                    yield ("id", "r#" + text[k:j], line)
                    i = j
                    continue
            yield ("id", word, line)
            i = j
        else:
            yield ("p", c, line)
            i += 1

def functions(text):
    """(name, first line, last line, in a test module) for every fn with a body."""
    toks = list(tokens(text))
    out, depth = [], 0
    stack = []        # (kind, depth its block opened at, name, line): kind fn | test | block
    pending = None    # a `fn name` whose body brace is not reached yet: (name, line)
    parens = 0        # ( and [ depth inside a pending signature
    cfg_test = False  # `#[cfg(test)]` seen, waiting for the item it applies to
    for k, (kind, v, line) in enumerate(toks):
        if kind == "id" and v == "fn" and k + 1 < len(toks) and toks[k + 1][0] == "id":
            pending, parens = (toks[k + 1][1], line), 0
        elif kind == "p" and v == "#" and [t[1] for t in toks[k + 1:k + 7]] == ["[", "cfg", "(", "test", ")", "]"]:
            cfg_test = True
        elif kind == "p" and v in "([":
            parens += pending is not None
        elif kind == "p" and v in ")]":
            parens -= pending is not None
        elif kind == "p" and v == ";" and pending and parens == 0:
            pending = None
        elif kind == "p" and v == "{":
            depth += 1
            if pending and parens == 0:
                stack.append(("fn", depth) + pending)
                pending = None
            elif cfg_test:
                stack.append(("test", depth, "", line))
            else:
                stack.append(("block", depth, "", line))
            cfg_test = False
        elif kind == "p" and v == "}":
            if stack and stack[-1][1] == depth:
                what, _, name, start = stack.pop()
                if what == "fn":
                    in_test = any(s[0] == "test" for s in stack)
                    out.append((name, start, line, in_test))
            depth -= 1
        elif kind == "p" and v == ";":
            cfg_test = False  # `#[cfg(test)]` on an item without a block
    return out

def rust_files(paths):
    for p in paths:
        if os.path.isdir(p):
            for d, _, names in os.walk(p):
                yield from (os.path.join(d, f) for f in names if f.endswith(".rs"))
        else:
            yield p

limit, keep_tests = int(sys.argv[1]), sys.argv[2] == "1"
rows = []
for path in sorted(rust_files(sys.argv[3:])):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    test_file = path.endswith("/tests.rs") or path == "tests.rs"
    for name, start, end, in_test in functions(text):
        length = end - start + 1
        is_test = in_test or test_file
        if length > limit and (keep_tests or not is_test):
            rows.append((length, path, start, name, is_test))
rows.sort(key=lambda r: (-r[0], r[1], r[2]))
for length, path, start, name, is_test in rows:
    print(f"{path}:{start}\t{length}\t{name}" + ("\t(test)" if is_test else ""))
PY
