//! Reading the triggers: a Redis backlog, a Prometheus query, a number in an HTTP JSON
//! answer, the CPU and memory of the service's replicas. Each reading is one number or
//! one line saying why there is none; no line ever carries a password or a token.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Body;
use tokio::time::timeout;

use crate::config::{RedisBacklog, ScaleTrigger, SecretSource, TriggerSource};
use crate::engine::model::Usage;
use crate::engine::{Client, Engine, Filters};
use crate::notify::{Http, http_client};

/// A reading in flight.
pub type Reading<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The running replicas of a service, as the mode that runs them sees them.
pub trait Replicas: Send + Sync {
    /// How many replicas of `service` there are now (what a restarted drover starts from).
    fn count<'a>(&'a self, service: &'a str) -> Reading<'a, u32>;
    /// One CPU and memory sample of each running replica of `service`.
    fn usage<'a>(&'a self, service: &'a str) -> Reading<'a, Vec<Usage>>;
}

/// The running containers `filters` finds on `engines`, counted and, with `stats`, each
/// sampled once. Engines that do not answer are skipped; none answering is an error, and
/// so is no sample at all when samples were asked for.
pub async fn sample(
    engines: &[Client],
    filters: &Filters,
    stats: bool,
) -> Result<(u32, Vec<Usage>), String> {
    let mut filters = filters.clone();
    filters.insert("status".into(), vec!["running".into()]);
    let lists = engines.iter().map(|e| {
        let filters = filters.clone();
        async move { (e, e.list_containers(filters).await) }
    });
    let mut count = 0u32;
    let mut answered = false;
    let mut ids = Vec::new();
    let mut last_error = None;
    for (engine, list) in futures::future::join_all(lists).await {
        match list {
            Ok(l) => {
                answered = true;
                count += l.len() as u32;
                ids.extend(l.into_iter().filter_map(|c| c.id).map(|id| (engine, id)));
            }
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    if !answered {
        return Err(format!(
            "cannot list the replicas: {}",
            last_error.unwrap_or_else(|| "no engine is connected".into())
        ));
    }
    if !stats {
        return Ok((count, Vec::new()));
    }
    let samples = ids.iter().map(|(e, id)| e.usage(id));
    let usage: Vec<Usage> = futures::future::join_all(samples)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    if usage.is_empty() {
        return Err("no running replica to measure".into());
    }
    Ok((count, usage))
}

/// The `key=value` labels every replica of a service carries, given the service.
pub type Labels = Box<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// Replicas found by labels on a fixed set of engines (what `drover plan` connected to).
pub struct Listed {
    pub engines: Vec<Client>,
    pub labels: Labels,
}

impl Listed {
    fn filters(&self, service: &str) -> Filters {
        Filters::from([("label".to_string(), (self.labels)(service))])
    }
}

impl Replicas for Listed {
    fn count<'a>(&'a self, service: &'a str) -> Reading<'a, u32> {
        Box::pin(async move {
            let (n, _) = sample(&self.engines, &self.filters(service), false).await?;
            Ok(n)
        })
    }

    fn usage<'a>(&'a self, service: &'a str) -> Reading<'a, Vec<Usage>> {
        Box::pin(async move {
            let (_, usage) = sample(&self.engines, &self.filters(service), true).await?;
            Ok(usage)
        })
    }
}

/// The largest answer read from a Prometheus or HTTP trigger.
const MAX_BODY: usize = 4 << 20;

/// What reading the triggers keeps: the HTTP client, one Redis connection per trigger.
pub struct Readers {
    http: Http,
    redis: HashMap<String, redis::aio::MultiplexedConnection>,
    replicas: Option<Arc<dyn Replicas>>,
    env: fn(&str) -> Option<String>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Readers {
    /// `replicas`: where CPU and memory come from (`None`: such triggers do not answer).
    pub fn new(replicas: Option<Arc<dyn Replicas>>) -> Readers {
        Readers {
            http: http_client(),
            redis: HashMap::new(),
            replicas,
            env: process_env,
        }
    }

    /// The replicas `service` has now.
    pub async fn count(&self, service: &str) -> Result<u32, String> {
        match &self.replicas {
            Some(r) => r.count(service).await,
            None => Err("no engine to count the replicas on".into()),
        }
    }

    /// Every trigger of `service`, read at once, each within its own timeout. `key`
    /// prefixes the connections kept per trigger.
    pub async fn read_all(
        &mut self,
        service: &str,
        triggers: &[ScaleTrigger],
    ) -> Vec<Result<f64, String>> {
        // Redis connections are taken out so each reading owns its own.
        let mut conns: Vec<Option<redis::aio::MultiplexedConnection>> = triggers
            .iter()
            .map(|t| self.redis.remove(&conn_key(service, t)))
            .collect();
        let this = &*self;
        let readings = triggers
            .iter()
            .zip(conns.iter_mut())
            .map(|(t, conn)| async move {
                match timeout(t.timeout, this.read(service, t, conn)).await {
                    Ok(r) => r,
                    Err(_) => {
                        *conn = None;
                        Err(format!(
                            "no answer within {}",
                            humantime::format_duration(t.timeout)
                        ))
                    }
                }
            });
        let out = futures::future::join_all(readings).await;
        for (t, conn) in triggers.iter().zip(conns) {
            if let Some(c) = conn {
                self.redis.insert(conn_key(service, t), c);
            }
        }
        out
    }

    async fn read(
        &self,
        service: &str,
        t: &ScaleTrigger,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
    ) -> Result<f64, String> {
        match &t.source {
            TriggerSource::Redis { backlog, .. } => {
                let r = self.redis_backlog(&t.source, backlog, conn).await;
                if r.is_err() {
                    *conn = None;
                }
                r
            }
            TriggerSource::Prometheus { url, query, token } => {
                let url = format!(
                    "{}/api/v1/query?query={}",
                    url.trim_end_matches('/'),
                    encode(query)
                );
                let answer = self.get_json(&url, token.as_ref()).await?;
                prometheus_value(&answer)
            }
            TriggerSource::Http {
                url,
                pointer,
                token,
            } => {
                let answer = self.get_json(url, token.as_ref()).await?;
                json_number(&answer, pointer)
            }
            TriggerSource::Cpu | TriggerSource::Memory => {
                let Some(replicas) = &self.replicas else {
                    return Err("no engine to read the replicas' stats from".into());
                };
                let usage = replicas.usage(service).await?;
                average(&usage, matches!(t.source, TriggerSource::Cpu))
            }
        }
    }

    async fn redis_backlog(
        &self,
        source: &TriggerSource,
        backlog: &RedisBacklog,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
    ) -> Result<f64, String> {
        if conn.is_none() {
            *conn = Some(self.redis_connect(source).await?);
        }
        let Some(c) = conn.as_mut() else {
            return Err("no connection".into());
        };
        let n: i64 = match backlog {
            RedisBacklog::List { list } => redis::cmd("LLEN")
                .arg(list)
                .query_async(c)
                .await
                .map_err(|e| redis_error(&e))?,
            RedisBacklog::Stream { stream, group } => {
                // XPENDING stream group: [count, first id, last id, consumers].
                let v: redis::Value = redis::cmd("XPENDING")
                    .arg(stream)
                    .arg(group)
                    .query_async(c)
                    .await
                    .map_err(|e| redis_error(&e))?;
                match v {
                    redis::Value::Array(items) => match items.first() {
                        Some(redis::Value::Int(n)) => *n,
                        _ => return Err("XPENDING answered without a count".into()),
                    },
                    _ => return Err("XPENDING answered something else than a list".into()),
                }
            }
        };
        Ok(n as f64)
    }

    async fn redis_connect(
        &self,
        source: &TriggerSource,
    ) -> Result<redis::aio::MultiplexedConnection, String> {
        let TriggerSource::Redis {
            address,
            username,
            password,
            tls,
            tls_ca_file,
            ..
        } = source
        else {
            return Err("not a redis trigger".into());
        };
        let address = match address.strip_prefix("redis://") {
            Some(rest) if *tls || tls_ca_file.is_some() => format!("rediss://{rest}"),
            _ => address.clone(),
        };
        let info = redis::IntoConnectionInfo::into_connection_info(address.as_str())
            .map_err(|e| format!("the address: {}", redis_error(&e)))?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = username {
            settings = settings.set_username(u);
        }
        if let Some(p) = password {
            settings = settings.set_password(p.read(&|n| (self.env)(n))?);
        }
        let info = info.set_redis_settings(settings);
        let client = match tls_ca_file {
            Some(ca) => {
                let root =
                    std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                };
                redis::Client::build_with_tls(info, certs)
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| redis_error(&e))?;
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| redis_error(&e))
    }

    async fn get_json(
        &self,
        url: &str,
        token: Option<&SecretSource>,
    ) -> Result<serde_json::Value, String> {
        let mut req = hyper::Request::get(url).header("accept", "application/json");
        if let Some(t) = token {
            let t = t.read(&|n| (self.env)(n))?;
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(String::new())
            .map_err(|e| format!("cannot make the request: {e}"))?;
        let resp = self.http.request(req).await.map_err(|e| {
            // The error's text names the connection, never the request's headers.
            format!("no answer: {}", error_chain(&e))
        })?;
        let status = resp.status();
        let body = read_body(resp.into_body()).await?;
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))
    }
}

fn conn_key(service: &str, t: &ScaleTrigger) -> String {
    format!("{service}/{}", t.name)
}

/// A Redis error as one line, without the server's address details it may repeat.
fn redis_error(e: &redis::RedisError) -> String {
    let s = e.to_string();
    s.lines().next().unwrap_or("redis error").to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

async fn read_body(mut body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| format!("the answer broke off: {e}"))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
            if out.len() > MAX_BODY {
                return Err(format!("the answer is larger than {} MiB", MAX_BODY >> 20));
            }
        }
    }
    Ok(out)
}

/// Percent-encode a query parameter's value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An instant query's value: a scalar, or the sum of a vector's samples (an empty
/// vector is 0, as KEDA's `ignoreNullValues` default has it).
pub fn prometheus_value(answer: &serde_json::Value) -> Result<f64, String> {
    if answer["status"] != "success" {
        let error = answer["error"].as_str().unwrap_or("no status");
        return Err(format!("the query failed: {error}"));
    }
    let data = &answer["data"];
    let sample = |v: &serde_json::Value| -> Result<f64, String> {
        let text = v[1].as_str().ok_or("a sample without a value")?;
        let f: f64 = text
            .parse()
            .map_err(|_| format!("the value {text:?} is not a number"))?;
        if f.is_finite() {
            Ok(f)
        } else {
            Err(format!("the value is {text}"))
        }
    };
    match data["resultType"].as_str() {
        Some("scalar") => sample(&data["result"]),
        Some("vector") => {
            let samples = data["result"]
                .as_array()
                .ok_or("a vector without results")?;
            samples.iter().map(|s| sample(&s["value"])).sum()
        }
        Some(other) => Err(format!(
            "the query gives a {other}, not a scalar or an instant vector"
        )),
        None => Err("the answer has no resultType".into()),
    }
}

/// The number at `pointer` in `answer` (a number, or a string holding one).
pub fn json_number(answer: &serde_json::Value, pointer: &str) -> Result<f64, String> {
    let v = answer
        .pointer(pointer)
        .ok_or_else(|| format!("nothing at {pointer} in the answer"))?;
    let n = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|f: &f64| f.is_finite())
        .ok_or_else(|| format!("the value at {pointer} is not a number"))
}

/// The average CPU (% of a core) or memory (bytes) over the replicas sampled.
pub fn average(usage: &[Usage], cpu: bool) -> Result<f64, String> {
    if usage.is_empty() {
        return Err("no running replica to measure".into());
    }
    let sum: f64 = usage
        .iter()
        .map(|u| if cpu { u.cpu_percent } else { u.memory_bytes })
        .sum();
    Ok(sum / usage.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_prometheus_answer_is_its_scalar_or_the_sum_of_its_vector() {
        let v = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1.0,"3"]},{"metric":{"a":"2"},"value":[1.0,"4.5"]}]}});
        assert_eq!(prometheus_value(&v), Ok(7.5));
        let v = json!({"status":"success","data":{"resultType":"vector","result":[]}});
        assert_eq!(prometheus_value(&v), Ok(0.0));
        let v = json!({"status":"success","data":{"resultType":"scalar","result":[1.0,"12"]}});
        assert_eq!(prometheus_value(&v), Ok(12.0));
        let v = json!({"status":"success","data":{"resultType":"vector","result":[{"value":[1.0,"NaN"]}]}});
        assert_eq!(prometheus_value(&v), Err("the value is NaN".into()));
        let v = json!({"status":"error","error":"parse error at char 4"});
        assert_eq!(
            prometheus_value(&v),
            Err("the query failed: parse error at char 4".into())
        );
        let v = json!({"status":"success","data":{"resultType":"matrix","result":[]}});
        assert!(prometheus_value(&v).unwrap_err().contains("matrix"));
    }

    #[test]
    fn a_json_pointer_finds_a_number_or_says_why_not() {
        let v = json!({"queue":{"depth":17,"name":"jobs","text":" 4 "},"list":[1,2]});
        assert_eq!(json_number(&v, "/queue/depth"), Ok(17.0));
        assert_eq!(json_number(&v, "/queue/text"), Ok(4.0));
        assert_eq!(json_number(&v, "/list/1"), Ok(2.0));
        assert_eq!(
            json_number(&v, "/queue/name"),
            Err("the value at /queue/name is not a number".into())
        );
        assert_eq!(
            json_number(&v, "/nope"),
            Err("nothing at /nope in the answer".into())
        );
    }

    #[test]
    fn usage_is_averaged_over_the_replicas() {
        let u = |c, m| Usage {
            cpu_percent: c,
            memory_bytes: m,
        };
        assert_eq!(average(&[u(50.0, 10.0), u(150.0, 30.0)], true), Ok(100.0));
        assert_eq!(average(&[u(50.0, 10.0), u(150.0, 30.0)], false), Ok(20.0));
        assert!(average(&[], true).is_err());
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode("sum(queue_depth{a=\"b c\"})"),
            "sum%28queue_depth%7Ba%3D%22b%20c%22%7D%29"
        );
    }
}
