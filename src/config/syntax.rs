//! Compose's small string syntaxes, parsed without any YAML: durations, shell words,
//! port and volume short forms, project names, lexical path joins.
//!
//! Each parser returns a short user-facing message on failure; the caller adds the
//! file location and key path.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::model::{MountKind, Protocol};

/// What [`parse_duration`] accepts, for messages and docs.
pub const DURATION_HINT: &str = "expected a duration like 10s, 1m30s, 1.5h or 500ms \
                                 (units ns, us, ms, s, m, h, d, w)";

/// A duration as Compose reads one (compose-go decodes durations with go-str2duration,
/// Go's `time.ParseDuration` plus days and weeks): one or more numbers, each with a
/// fraction optionally (`1.5m`, `.5s`) and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`,
/// `d`, `w`), combined without spaces (`1h30m`); `0` alone needs no unit. A number
/// without a unit, a space, an unknown unit or a negative duration is refused. The same
/// syntax serves the command line's flags and every duration in the files.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || DURATION_HINT.to_string();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac = "";
        if let Some(after) = rest.strip_prefix('.') {
            let n = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            frac = &after[..n];
            rest = &after[n..];
        }
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            "" => return Err(format!("{} (a number needs a unit)", bad())),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        total = total.saturating_add(whole.saturating_mul(nanos_per));
        if !frac.is_empty() {
            // As Go does: the fraction's digits scaled in floating point, truncated.
            let digits = &frac[..frac.len().min(18)];
            let f: f64 = digits.parse::<u64>().map_err(|_| bad())? as f64;
            let scale = 10f64.powi(digits.len() as i32);
            total = total.saturating_add((f * (nanos_per as f64 / scale)) as u128);
        }
        // Go's durations end at about 292 years.
        if total > i64::MAX as u128 {
            return Err("the duration is too long".into());
        }
    }
    if negative && total > 0 {
        return Err("a duration cannot be negative".into());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// A byte size as compose reads it (go-units `RAMInBytes`): a number, optionally with a
/// fraction, then an optional unit `b`, `k`, `m`, `g`, `t`, `p` (any case, optionally
/// followed by `b` or `ib`), powers of 1024.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let bad = || "expected a size like 512m, 1g or 1024 (bytes)".to_string();
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(unit);
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

/// Split a command line into words like a POSIX shell does (quotes and backslashes;
/// no expansion), as Compose does for string `command`/`entrypoint`.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => cur.push('\\'),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// One entry of the port short syntax, before range expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: Option<String>,
    /// Inclusive host port range; `None`: ephemeral.
    pub published: Option<(u16, u16)>,
    /// Inclusive container port range.
    pub target: (u16, u16),
    pub protocol: Protocol,
}

pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        _ => Err("protocol must be tcp, udp or sctp".into()),
    }
}

pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || "expected a port number (1-65535) or a range like 9000-9001".to_string();
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// A port's host address as compose checks it: an IPv4 or IPv6 address (IPv6 possibly in
/// brackets), returned without the brackets.
pub fn parse_host_ip(s: &str) -> Result<String, String> {
    let ip = match s.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| format!("invalid IP address: {s}"))?,
        None => s,
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(ip.to_string()),
        Err(_) => Err(format!("invalid IP address: {s}")),
    }
}

/// `[host_ip:][published[-range]:]target[-range][/protocol]`, split as compose does: the
/// last part is the target, the one before it the published port, everything before
/// those the host address (so `::1:8080:80` and `[::1]:8080:80` both bind `::1`).
pub fn parse_port_short(s: &str) -> Result<PortSpec, String> {
    let (body, protocol) = match s.rsplit_once('/') {
        Some((b, p)) => (b, parse_protocol(p)?),
        None => (s, Protocol::Tcp),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let n = parts.len();
    let (host_ip, rest) = if n <= 2 {
        (None, body)
    } else {
        let ip_len = parts[..n - 2].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
        let ip = &body[..ip_len];
        let ip = if ip.is_empty() {
            None
        } else {
            Some(parse_host_ip(ip)?)
        };
        (ip, &body[ip_len + 1..])
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (Some(p), t),
        None => (None, rest),
    };
    let target = parse_port_range(target)?;
    let published = match published {
        None | Some("") => None,
        Some(p) => Some(parse_port_range(p)?),
    };
    if let Some((a, b)) = published
        && b - a != target.1 - target.0
    {
        return Err("published and target port ranges must have the same length".into());
    }
    Ok(PortSpec {
        host_ip: host_ip.filter(|ip| !ip.is_empty()),
        published,
        target,
        protocol,
    })
}

/// One entry of the volume short syntax, before named volumes are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub kind: MountKind,
    /// Bind: the host path as written. Volume: the volume key, or `None` for anonymous.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// `z` or `Z`.
    pub selinux: Option<String>,
    /// `shared`, `rslave`, ... (binds only).
    pub propagation: Option<String>,
    pub nocopy: bool,
}

/// Whether a short-syntax source is a host path (not a named volume).
pub fn is_host_path(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}

/// `SOURCE:TARGET[:MODE]` or `TARGET` (anonymous volume).
pub fn parse_volume_short(s: &str) -> Result<VolumeSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err("expected SOURCE:TARGET[:MODE] or TARGET".into()),
    };
    if !target.starts_with('/') {
        return Err("the container path must be absolute".into());
    }
    let mut read_only = false;
    let mut selinux = None;
    let mut propagation = None;
    let mut nocopy = false;
    if let Some(mode) = mode {
        for m in mode.split(',') {
            match m {
                "ro" => read_only = true,
                "z" | "Z" => selinux = Some(m.to_string()),
                "nocopy" => nocopy = true,
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                    propagation = Some(m.to_string())
                }
                "rw" | "consistent" | "cached" | "delegated" => {}
                _ => {
                    return Err("mode must be ro or rw, optionally with z, Z, nocopy or a \
                                propagation (shared, rslave, ...)"
                        .into());
                }
            }
        }
    }
    let kind = match source {
        Some(s) if is_host_path(s) => MountKind::Bind,
        Some("") => return Err("empty source".into()),
        _ => MountKind::Volume,
    };
    Ok(VolumeSpec {
        kind,
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        selinux,
        propagation,
        nocopy,
    })
}

/// Normalize a project name like Compose: lowercase, drop characters outside
/// `[a-z0-9_-]`; the result must start with a letter or digit.
pub fn normalize_project_name(raw: &str) -> Result<String, String> {
    let name: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    match name.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() => Ok(name),
        _ => Err(format!(
            "project name {raw:?} must contain only lowercase letters, digits, dashes and \
             underscores, and start with a letter or digit"
        )),
    }
}

/// `base.join(path)` with `.` and `..` resolved lexically (no filesystem access).
pub fn join_lexically(base: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("1.5m"), Duration::from_secs(90));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("2us"), Duration::from_micros(2));
        assert_eq!(ok("1µs"), Duration::from_micros(1));
        assert_eq!(ok("100ns"), Duration::from_nanos(100));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(ok("2w"), Duration::from_secs(14 * 86_400));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("1.000000001s"), Duration::from_nanos(1_000_000_001));
        // What compose refuses.
        for s in [
            "10", "5.", "1day", "1h 30m", "1H", " 1s", "abc", "5x", "", ".", "s", "1s5",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?} accepted");
        }
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("3000000h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("10b"), Ok(10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5x").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c 'echo "hi there"' a\ b "x\"y""#).unwrap(),
            vec!["sh", "-c", "echo \"hi there\"", "a b", "x\"y"]
        );
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shell_split("a ''").unwrap(), vec!["a", ""]);
        assert!(shell_split("'open").is_err());
    }

    #[test]
    fn ports() {
        let p = parse_port_short("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.published, Some((8080, 8080)));
        assert_eq!(p.target, (80, 80));
        assert_eq!(p.protocol, Protocol::Udp);
        let p = parse_port_short("80").unwrap();
        assert_eq!((p.published, p.target), (None, (80, 80)));
        let p = parse_port_short("9000-9001:9000-9001").unwrap();
        assert_eq!((p.published, p.target), (Some((9000, 9001)), (9000, 9001)));
        let p = parse_port_short("[::1]:53:53/udp").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        let p = parse_port_short("::1:8080:80").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        assert_eq!((p.published, p.target), (Some((8080, 8080)), (80, 80)));
        let p = parse_port_short("[::1]::80").unwrap();
        assert_eq!((p.host_ip.as_deref(), p.published), (Some("::1"), None));
        let p = parse_port_short(":8080:80").unwrap();
        assert_eq!((p.host_ip, p.published), (None, Some((8080, 8080))));
        for bad in [
            "x:8080:80",
            "1.2.3:80:80",
            "fe80::1%eth0:80:80",
            "[::1:80:80",
        ] {
            let e = parse_port_short(bad).unwrap_err();
            assert!(e.starts_with("invalid IP address: "), "{bad}: {e}");
        }
        let p = parse_port_short("127.0.0.1::80").unwrap();
        assert_eq!(p.published, None);
        assert!(parse_port_short("9000-9002:80-81").is_err());
        assert!(parse_port_short("http").is_err());
        assert!(parse_port_short("80/quic").is_err());
        assert!(parse_port_short("70000").is_err());
    }

    #[test]
    fn volumes() {
        let v = parse_volume_short("./data:/data:ro").unwrap();
        assert_eq!(v.kind, MountKind::Bind);
        assert!(v.read_only);
        let v = parse_volume_short("named:/data").unwrap();
        assert_eq!(
            (v.kind, v.source.as_deref()),
            (MountKind::Volume, Some("named"))
        );
        let v = parse_volume_short("/anon").unwrap();
        assert_eq!((v.kind, v.source), (MountKind::Volume, None));
        assert!(parse_volume_short("data:relative").is_err());
        assert!(parse_volume_short("a:/b:bogus").is_err());
    }

    #[test]
    fn project_names() {
        assert_eq!(normalize_project_name("My.App_1").unwrap(), "myapp_1");
        assert!(normalize_project_name("_x").is_err());
        assert!(normalize_project_name("...").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(
            join_lexically(Path::new("/p/q"), Path::new("./data/../x")),
            PathBuf::from("/p/q/x")
        );
        assert_eq!(
            join_lexically(Path::new("/p/q"), Path::new("/abs")),
            PathBuf::from("/abs")
        );
    }
}
