//! Compose interpolation: the input is split at its first newline into a `.env` line and a
//! value used as a service's image and as an environment entry (in block scalars, so any
//! text is a valid YAML string and only interpolation sees it).
#![no_main]

mod common;

fn indent(value: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    value.lines().map(|l| format!("{pad}{l}\n")).collect()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (dotenv, value) = text.split_once('\n').unwrap_or(("", text));
    let compose = format!(
        "services:\n  web:\n    image: |-\n{}    environment:\n      X: |-\n{}",
        indent(value, 6),
        indent(value, 8),
    );
    common::load(compose.as_bytes(), Some(dotenv.as_bytes()));
});
