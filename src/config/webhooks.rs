//! `x-drover.notify`: the webhooks drover posts events to. The URL itself is never in
//! the Compose file (it usually carries a token): each webhook names the file or the
//! environment variable that holds it, and only the notifier reads it, at start.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::ConfigError;
use super::model::{NotifyEvent, UrlSource, Webhook};
use super::read::{self, Warnings, child, fail, index};
use super::yaml::Node;

type Result<T> = std::result::Result<T, ConfigError>;

/// The `notify` list of `x-drover`. A relative `url_file` is resolved against `dir`.
pub fn webhooks(v: &Node, path: &str, dir: &Path, w: &mut Warnings) -> Result<Vec<Webhook>> {
    let mut out: Vec<Webhook> = Vec::new();
    for (i, item) in read::seq(v, path)?.iter().enumerate() {
        let p = index(path, i);
        let mut url = None;
        let mut name = None;
        let mut events = None;
        let mut timeout = None;
        for (k, val) in read::map(item, &p)? {
            let kp = child(&p, &k.name);
            let source = match k.name.as_str() {
                "url_file" => Some(UrlSource::File(dir.join(read::string(val, &kp)?))),
                "url_env" => Some(UrlSource::Env(env_name(val, &kp)?)),
                "url" => {
                    return Err(fail(
                        &k.loc,
                        &kp,
                        "a webhook URL usually carries a secret: put it in a file (url_file) \
                         or an environment variable (url_env)",
                    ));
                }
                "name" => {
                    name = Some(webhook_name(val, &kp)?);
                    None
                }
                "events" => {
                    events = Some(event_list(val, &kp)?);
                    None
                }
                "timeout" => {
                    timeout = Some(positive(val, &kp)?);
                    None
                }
                key if key.starts_with("x-") => None,
                _ => {
                    w.at(&k.loc, &kp, "unknown key, ignored");
                    None
                }
            };
            if let Some(s) = source {
                if url.is_some() {
                    return Err(fail(&k.loc, &kp, "give url_file or url_env, not both"));
                }
                url = Some(s);
            }
        }
        let url = url.ok_or_else(|| {
            fail(
                &item.loc,
                &p,
                "a webhook needs url_file or url_env (where its URL is)",
            )
        })?;
        let name = name.unwrap_or_else(|| i.to_string());
        if out.iter().any(|o| o.name == name) {
            return Err(fail(
                &item.loc,
                &p,
                format!("webhook {name} is listed twice"),
            ));
        }
        out.push(Webhook {
            name,
            url,
            events: events.unwrap_or_else(|| NotifyEvent::ALL.iter().copied().collect()),
            timeout,
        });
    }
    Ok(out)
}

fn env_name(v: &Node, path: &str) -> Result<String> {
    let s = read::string(v, path)?;
    let ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(fail(
            &v.loc,
            path,
            "expected the name of an environment variable (letters, digits, '_')",
        ));
    }
    Ok(s)
}

fn webhook_name(v: &Node, path: &str) -> Result<String> {
    let s = read::string(v, path)?;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(fail(
            &v.loc,
            path,
            "use letters, digits, '.', '_' and '-' (it names the webhook in logs and metrics)",
        ));
    }
    Ok(s)
}

fn event_list(v: &Node, path: &str) -> Result<BTreeSet<NotifyEvent>> {
    let mut out = BTreeSet::new();
    for (i, e) in read::seq(v, path)?.iter().enumerate() {
        let p = index(path, i);
        let name = read::string(e, &p)?;
        let kind = name.parse().map_err(|m| fail(&e.loc, &p, m))?;
        out.insert(kind);
    }
    if out.is_empty() {
        return Err(fail(
            &v.loc,
            path,
            "an empty list sends nothing: leave events out for all of them",
        ));
    }
    Ok(out)
}

fn positive(v: &Node, path: &str) -> Result<Duration> {
    let d = read::duration(v, path)?;
    if d.is_zero() {
        return Err(fail(&v.loc, path, "expected a duration above zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn parse(yaml: &str) -> (Result<Vec<Webhook>>, Vec<String>) {
        let node = super::super::yaml::parse(&Arc::from("compose.yml"), yaml, None).unwrap();
        let mut w = Warnings::default();
        let r = webhooks(&node, "x-drover.notify", Path::new("/proj"), &mut w);
        (r, w.0)
    }

    #[test]
    fn reads_file_and_env_sources_with_all_events_by_default() {
        let (r, warnings) = parse(
            "- url_file: secrets/hook\n  events: [scale, node-down]\n  timeout: 3s\n  x-note: 1\n\
             - url_env: HOOK_URL\n  name: ops\n  colour: red\n",
        );
        let hooks = r.unwrap();
        assert_eq!(hooks.len(), 2);
        assert_eq!(hooks[0].name, "0");
        assert_eq!(
            hooks[0].url,
            UrlSource::File(Path::new("/proj/secrets/hook").into())
        );
        assert_eq!(
            hooks[0].events,
            BTreeSet::from([NotifyEvent::Scale, NotifyEvent::NodeDown])
        );
        assert_eq!(hooks[0].timeout, Some(Duration::from_secs(3)));
        assert_eq!(hooks[1].name, "ops");
        assert_eq!(hooks[1].url, UrlSource::Env("HOOK_URL".into()));
        assert_eq!(hooks[1].events.len(), NotifyEvent::ALL.len());
        assert_eq!(
            warnings,
            ["compose.yml:7:3: x-drover.notify[1].colour: unknown key, ignored"]
        );
    }

    #[test]
    fn errors_are_located_and_never_quote_a_url() {
        let err = |yaml: &str| parse(yaml).0.unwrap_err().to_string();
        assert_eq!(
            err("- url_file: a\n  url_env: B\n"),
            "compose.yml:2:3: x-drover.notify[0].url_env: give url_file or url_env, not both"
        );
        assert_eq!(
            err("- events: [scale]\n"),
            "compose.yml:1:3: x-drover.notify[0]: a webhook needs url_file or url_env (where its URL is)"
        );
        let e = err("- url: https://hooks.example/T0k3n\n");
        assert!(
            e.starts_with("compose.yml:1:3: x-drover.notify[0].url: "),
            "{e}"
        );
        assert!(!e.contains("T0k3n"), "{e}");
        assert_eq!(
            err("- url_env: A\n  events: [scale, node-gone]\n"),
            format!(
                "compose.yml:2:19: x-drover.notify[0].events[1]: unknown event, expected one of {}",
                NotifyEvent::ALL.map(|e| e.as_str()).join(", ")
            )
        );
        assert!(err("- url_env: A\n  events: []\n").contains("events: an empty list"));
        assert!(err("- url_env: 1A\n").contains("url_env: expected the name"));
        assert!(
            err("- url_env: A\n  timeout: 0s\n")
                .contains("timeout: expected a duration above zero")
        );
        assert!(
            err("- url_env: A\n  name: x\n- url_env: B\n  name: x\n")
                .contains("webhook x is listed twice")
        );
        assert!(
            err("url_env: A\n").contains("x-drover.notify: expected a list"),
            "{}",
            err("url_env: A\n")
        );
    }
}
