//! Registry credentials, found as the Docker CLI finds them: `$DOCKER_CONFIG/config.json`
//! (default `~/.docker/config.json`), with its `auths` entries (`auth`, or `username` and
//! `password`, or `identitytoken`), and its credential helpers (`credHelpers` for one
//! registry, `credsStore` for all) run as `docker-credential-<name> get` with the server
//! address on stdin. Images without a registry (`busybox`, `team/app`) are Docker Hub's,
//! whose key is `https://index.docker.io/v1/`.
//!
//! The file is read again when it changes (its modification time, size or inode), so a
//! `docker login` on the host, or a rotated token, is used at the next pull without a
//! restart. Helpers are asked at every lookup (they may rotate what they hold), off the
//! async runtime's threads and with a timeout.
//!
//! Secrets never leave this module except towards the engine: [`RegistryAuth`] prints as
//! its user and registry only, and [`RegistryAuth::redact`] scrubs them from any text that
//! came back with them.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::Deserialize;

/// Docker Hub's key in `config.json` and its server address for helpers.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(15);

/// What the engine is given to log in to a registry (the `X-Registry-Auth` header).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// An OAuth identity token (`identitytoken`, or a helper's `<token>` user).
    pub identity_token: String,
    /// The registry, as its `config.json` key (`https://index.docker.io/v1/` for Hub).
    pub server_address: String,
}

impl RegistryAuth {
    /// `text` with every secret of this login (password, token, the base64 `auth` pair)
    /// replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&pair);
        let mut out = text.to_string();
        for secret in [&encoded, &pair, &self.password, &self.identity_token] {
            if secret.len() >= 3 && secret != ":" {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

/// Never the secrets.
impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("password", &"***")
            .field("identity_token", &"***")
            .finish()
    }
}

/// The result of a lookup: the login, if any, and where drover looked (for messages:
/// `auths["reg:5000"] in /config/config.json`, or why there is nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub auth: Option<RegistryAuth>,
    pub source: String,
}

/// Credentials that exist but cannot be used: one line naming the registry and the file
/// or helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    /// `config.json` cannot be read, or is not the CLI's JSON.
    Config { path: PathBuf, reason: String },
    /// An `auths` entry whose `auth` is not base64 of `user:password`.
    BadEntry {
        path: PathBuf,
        key: String,
        registry: String,
    },
    /// A credential helper is missing, failed, timed out or answered something else.
    Helper {
        helper: String,
        /// `credHelpers` or `credsStore`.
        from: &'static str,
        path: PathBuf,
        registry: String,
        reason: String,
    },
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Config { path, reason } => write!(
                f,
                "cannot read registry credentials from {}: {reason}",
                path.display()
            ),
            CredentialsError::BadEntry {
                path,
                key,
                registry,
            } => write!(
                f,
                "credentials for {registry}: auths[\"{key}\"] in {} has an `auth` that is not \
                 base64 of user:password (log in again with docker login {registry})",
                path.display()
            ),
            CredentialsError::Helper {
                helper,
                from,
                path,
                registry,
                reason,
            } => write!(
                f,
                "credentials for {registry}: docker-credential-{helper} ({from} in {}) {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CredentialsError {}

/// The parts of the CLI's `config.json` that hold credentials.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFile {
    #[serde(default)]
    pub auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    pub cred_helpers: HashMap<String, String>,
    #[serde(default)]
    pub creds_store: Option<String>,
}

/// One `auths` entry.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct AuthEntry {
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

/// Never the secrets.
impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ConfigFile {
    /// Parse `config.json`; an empty file is an empty config, as for the CLI.
    pub fn parse(bytes: &[u8]) -> Result<ConfigFile, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ConfigFile::default());
        }
        // Where, and what kind of problem: serde_json's own message can quote a value,
        // and a value here may be a secret.
        serde_json::from_slice(bytes).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => "a value of the wrong type",
                serde_json::error::Category::Eof => "the file ends too soon",
                serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                    "not valid JSON"
                }
            };
            format!("{what} at line {} column {}", e.line(), e.column())
        })
    }

    /// Where the credentials for `registry` (a [`registry_key`]) come from, by the CLI's
    /// rules: its `credHelpers` entry, else `credsStore`, else an `auths` entry (the key
    /// itself, or one that names the same host with a scheme or path).
    pub fn choose(&self, registry: &str) -> Choice {
        let host = hostname(registry);
        if let Some(h) = self
            .cred_helpers
            .get(registry)
            .or_else(|| self.cred_helpers.get(host))
        {
            return Choice::Helper(h.clone(), "credHelpers");
        }
        if let Some(h) = self.creds_store.as_deref().filter(|h| !h.is_empty()) {
            return Choice::Helper(h.to_string(), "credsStore");
        }
        if self.auths.contains_key(registry) {
            return Choice::Entry(registry.to_string());
        }
        let mut keys: Vec<&String> = self.auths.keys().filter(|k| hostname(k) == host).collect();
        keys.sort();
        match keys.first() {
            Some(k) => Choice::Entry(k.to_string()),
            None => Choice::Nothing,
        }
    }
}

/// Where a registry's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A helper (`docker-credential-<name>`), named in `credHelpers` or `credsStore`.
    Helper(String, &'static str),
    /// The `auths` entry with this key.
    Entry(String),
    Nothing,
}

/// An `auth` value that is not base64 of `user:password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadAuth;

/// The login an `auths` entry holds (`None`: the entry holds none, e.g. an email only).
pub fn entry_auth(entry: &AuthEntry, registry: &str) -> Result<Option<RegistryAuth>, BadAuth> {
    let mut auth = RegistryAuth {
        username: entry.username.clone().unwrap_or_default(),
        password: entry.password.clone().unwrap_or_default(),
        identity_token: entry.identitytoken.clone().unwrap_or_default(),
        server_address: registry.to_string(),
    };
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| BadAuth)?;
        let pair = String::from_utf8(decoded).map_err(|_| BadAuth)?;
        let (user, password) = pair.split_once(':').ok_or(BadAuth)?;
        auth.username = user.to_string();
        auth.password = password.to_string();
    }
    let empty = auth.username.is_empty() && auth.password.is_empty();
    Ok((!empty || !auth.identity_token.is_empty()).then_some(auth))
}

/// A helper's answer to `get`: `{"ServerURL", "Username", "Secret"}`; the user `<token>`
/// means the secret is an identity token.
pub fn helper_auth(stdout: &[u8], registry: &str) -> Result<RegistryAuth, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(stdout)
        .map_err(|_| "answered something other than the helper protocol's JSON".to_string())?;
    let mut auth = RegistryAuth {
        server_address: registry.to_string(),
        ..Default::default()
    };
    if a.username == "<token>" {
        auth.identity_token = a.secret;
    } else {
        auth.username = a.username;
        auth.password = a.secret;
    }
    Ok(auth)
}

/// The registry of an image reference, as the Docker CLI normalizes it: the part before
/// the first `/` when it looks like a host (has `.` or `:`, is `localhost`, or has
/// upper-case letters); otherwise Docker Hub (`docker.io`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            first
        }
        _ => "docker.io",
    }
}

/// The key a registry's credentials are stored under: the host, or Docker Hub's URL.
pub fn registry_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        r => r.to_string(),
    }
}

/// A `config.json` key's host, as the CLI compares them: without a scheme or a path.
pub fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// The file as last read, and what it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    file: Arc<ConfigFile>,
}

/// The registry credentials of one `DOCKER_CONFIG` directory: cheap to clone (clones share
/// what was read).
#[derive(Clone)]
pub struct Credentials {
    dir: PathBuf,
    /// How the directory was chosen, for messages (`DOCKER_CONFIG`, or the default).
    chosen_by: &'static str,
    cache: Arc<Mutex<Option<Cached>>>,
    helper_timeout: Duration,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({})", self.path().display())
    }
}

/// The process's own: `DOCKER_CONFIG`, else `~/.docker`.
impl Default for Credentials {
    fn default() -> Self {
        let env: HashMap<String, String> = std::env::vars().collect();
        Credentials::from_env(&env)
    }
}

impl Credentials {
    /// The directory the CLI would use with `env`: `DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn from_env(env: &HashMap<String, String>) -> Credentials {
        match env.get("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            Some(dir) => Credentials::in_dir(dir, "DOCKER_CONFIG"),
            None => {
                let home = env.get("HOME").map(String::as_str).unwrap_or("/root");
                Credentials::in_dir(Path::new(home).join(".docker"), "the default")
            }
        }
    }

    /// The credentials in `dir/config.json`; `chosen_by` says why that directory.
    pub fn in_dir(dir: impl Into<PathBuf>, chosen_by: &'static str) -> Credentials {
        Credentials {
            dir: dir.into(),
            chosen_by,
            cache: Arc::default(),
            helper_timeout: HELPER_TIMEOUT,
        }
    }

    /// With another limit on how long a helper may take.
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Credentials {
        self.helper_timeout = timeout;
        self
    }

    /// The `config.json` read.
    pub fn path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The file's contents, read again when it changed; `None` when there is no file.
    fn config(&self) -> Result<Option<Arc<ConfigFile>>, CredentialsError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path();
        let failed = |reason: String| CredentialsError::Config {
            path: path.clone(),
            reason,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(unreadable(&e))),
        };
        let stamp = Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref().filter(|c| c.stamp == stamp) {
            return Ok(Some(c.file.clone()));
        }
        let bytes = std::fs::read(&path).map_err(|e| failed(unreadable(&e)))?;
        let file = Arc::new(ConfigFile::parse(&bytes).map_err(failed)?);
        *cache = Some(Cached {
            stamp,
            file: file.clone(),
        });
        Ok(Some(file))
    }

    /// The login for the registry of `image`, and where it was found (or looked for).
    pub async fn for_image(&self, image: &str) -> Result<Found, CredentialsError> {
        self.lookup(registry_of(image)).await
    }

    /// The login for `registry` (a host such as `reg:5000`, or `docker.io`).
    pub async fn lookup(&self, registry: &str) -> Result<Found, CredentialsError> {
        let key = registry_key(registry);
        let path = self.path();
        let Some(file) = self.config()? else {
            return Ok(Found {
                auth: None,
                source: format!(
                    "{} does not exist (DOCKER_CONFIG: {})",
                    path.display(),
                    self.chosen_by_text()
                ),
            });
        };
        match file.choose(&key) {
            Choice::Nothing => Ok(Found {
                auth: None,
                source: format!("no entry for {key} in {}", path.display()),
            }),
            Choice::Entry(k) => {
                let auth = entry_auth(&file.auths[&k], &key).map_err(|BadAuth| {
                    CredentialsError::BadEntry {
                        path: path.clone(),
                        key: k.clone(),
                        registry: registry.to_string(),
                    }
                })?;
                Ok(Found {
                    auth,
                    source: format!("auths[\"{k}\"] in {}", path.display()),
                })
            }
            Choice::Helper(helper, from) => {
                let failed = |reason: String| CredentialsError::Helper {
                    helper: helper.clone(),
                    from,
                    path: path.clone(),
                    registry: registry.to_string(),
                    reason,
                };
                let answer = run_helper(&helper, &key, self.helper_timeout)
                    .await
                    .map_err(failed)?;
                let auth = match answer {
                    Some(out) => Some(helper_auth(&out, &key).map_err(failed)?),
                    None => None,
                };
                Ok(Found {
                    auth,
                    source: format!("docker-credential-{helper} ({from} in {})", path.display()),
                })
            }
        }
    }

    fn chosen_by_text(&self) -> String {
        match self.chosen_by {
            "DOCKER_CONFIG" => format!("{}", self.dir.display()),
            other => format!("unset, {other} {}", self.dir.display()),
        }
    }
}

/// Why the file cannot be read, with what to do when it is the permissions.
fn unreadable(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "{e}; the file must be readable by the user drover runs as (the image's is uid \
             65532: docker login keeps a file's owner and mode, so chown it once)"
        ),
        _ => e.to_string(),
    }
}

/// `docker-credential-<helper> get` with `server` on stdin: its stdout, or `None` when it
/// has no credentials for that server. An error says what went wrong (never its output,
/// which could hold a secret, beyond the helper's own first line on failure).
pub async fn run_helper(
    helper: &str,
    server: &str,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, String> {
    ask(&format!("docker-credential-{helper}"), server, timeout).await
}

/// [`run_helper`] with the program named (found on `PATH` unless it is a path).
async fn ask(
    program: impl AsRef<std::ffi::OsStr>,
    server: &str,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "is not on PATH (install it where drover runs, \
                 or use auths entries written by docker login)"
                .to_string(),
            _ => format!("cannot be run: {e}"),
        })?;
    let mut stdin = child.stdin.take().ok_or("has no stdin")?;
    let talk = async {
        // A helper that exits without reading is fine: its answer says why.
        let _ = stdin.write_all(server.as_bytes()).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(timeout, talk)
        .await
        .map_err(|_| format!("did not answer within {} s", timeout.as_secs()))?
        .map_err(|e| format!("failed: {e}"))?;
    if out.status.success() {
        return Ok(Some(out.stdout));
    }
    let said = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .lines()
    .next()
    .unwrap_or("")
    .trim()
    .chars()
    .take(200)
    .collect::<String>();
    // The helpers' own words for "nothing stored for that server".
    if said.contains("credentials not found") {
        return Ok(None);
    }
    Err(format!("failed ({}): {said}", out.status))
}

/// Whether an engine's pull error says the registry wants a (different) login.
pub fn is_auth_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "no basic auth credentials",
        "unauthorized",
        "authentication required",
        "incorrect username or password",
        "access denied",
        "denied: requested access",
    ]
    .iter()
    .any(|p| m.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn registries_are_named_as_the_cli_names_them() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("team/app:v1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(
            registry_of("reg.example.com/team/app@sha256:ab"),
            "reg.example.com"
        );
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("Reg/app"), "Reg");
        assert_eq!(registry_key("docker.io"), DOCKER_HUB);
        assert_eq!(registry_key("index.docker.io"), DOCKER_HUB);
        assert_eq!(registry_key("reg:5000"), "reg:5000");
        assert_eq!(hostname("https://reg:5000/v2/"), "reg:5000");
        assert_eq!(hostname("http://reg"), "reg");
        assert_eq!(hostname(DOCKER_HUB), "index.docker.io");
    }

    #[test]
    fn auths_entries_give_the_login_in_any_of_their_forms() {
        let json = format!(
            r#"{{"auths": {{
                "reg:5000": {{"auth": "{}"}},
                "https://other.example/v1/": {{"username": "u", "password": "p"}},
                "{DOCKER_HUB}": {{"identitytoken": "tok"}},
                "mail.example": {{"email": "a@b"}},
                "broken": {{"auth": "not base64!"}}
            }}}}"#,
            b64("alice:pa:ss")
        );
        let file = ConfigFile::parse(json.as_bytes()).unwrap();
        assert_eq!(file.choose("reg:5000"), Choice::Entry("reg:5000".into()));
        let a = entry_auth(&file.auths["reg:5000"], "reg:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("alice", "pa:ss")
        );
        // A key with a scheme and a path names the same host.
        let k = "https://other.example/v1/";
        assert_eq!(file.choose("other.example"), Choice::Entry(k.into()));
        let a = entry_auth(&file.auths[k], "other.example")
            .unwrap()
            .unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        let a = entry_auth(&file.auths[DOCKER_HUB], DOCKER_HUB)
            .unwrap()
            .unwrap();
        assert_eq!(a.identity_token, "tok");
        assert_eq!(a.server_address, DOCKER_HUB);
        assert_eq!(entry_auth(&file.auths["mail.example"], "m"), Ok(None));
        assert_eq!(entry_auth(&file.auths["broken"], "broken"), Err(BadAuth));
        assert_eq!(file.choose("nowhere:1"), Choice::Nothing);
    }

    #[test]
    fn helpers_come_before_auths_entries_as_in_the_cli() {
        let file = ConfigFile::parse(
            br#"{"auths": {"reg:5000": {"auth": "dTpw"}, "a": {}},
                 "credHelpers": {"reg:5000": "ecr"}, "credsStore": "desktop"}"#,
        )
        .unwrap();
        assert_eq!(
            file.choose("reg:5000"),
            Choice::Helper("ecr".into(), "credHelpers")
        );
        assert_eq!(
            file.choose("a"),
            Choice::Helper("desktop".into(), "credsStore")
        );
        assert_eq!(ConfigFile::parse(b"  \n").unwrap(), ConfigFile::default());
        let e = ConfigFile::parse(br#"{"auths": {"reg": {"auth": "c2VjcmV0"}"#).unwrap_err();
        assert_eq!(e, "the file ends too soon at line 1 column 38");
        // serde_json would quote the value itself.
        let e = ConfigFile::parse(br#"{"auths": {"reg": "c2VjcmV0"}}"#).unwrap_err();
        assert_eq!(e, "a value of the wrong type at line 1 column 28");
    }

    #[test]
    fn a_helper_answer_is_a_login_or_an_identity_token() {
        let a = helper_auth(br#"{"ServerURL":"r","Username":"bob","Secret":"pw"}"#, "r").unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("bob", "pw"));
        let a = helper_auth(
            br#"{"ServerURL":"r","Username":"<token>","Secret":"t"}"#,
            "r",
        )
        .unwrap();
        assert_eq!((a.username.as_str(), a.identity_token.as_str()), ("", "t"));
        let e = helper_auth(b"secret-ish garbage", "r").unwrap_err();
        assert!(!e.contains("secret-ish"));
    }

    #[test]
    fn secrets_are_never_printed() {
        let a = RegistryAuth {
            username: "alice".into(),
            password: "hunter22".into(),
            identity_token: "tok-123".into(),
            server_address: "reg:5000".into(),
        };
        let shown = format!("{a:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter22") && !shown.contains("tok-123")
        );
        let text = format!("echo alice:hunter22 {} tok-123", b64("alice:hunter22"));
        assert_eq!(a.redact(&text), "echo *** *** ***");
        let entry = AuthEntry {
            auth: Some(b64("a:b")),
            password: Some("pw".into()),
            ..Default::default()
        };
        assert!(!format!("{entry:?}").contains("pw"));
        assert!(is_auth_failure(
            "Head \"http://r/v2/a/manifests/latest\": no basic auth credentials"
        ));
        assert!(is_auth_failure("unauthorized: authentication required"));
        assert!(!is_auth_failure("manifest for r/a:latest not found"));
    }

    fn dir(files: &[(&str, &str)]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("drover-creds-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        d
    }

    #[tokio::test]
    async fn the_file_is_read_again_when_it_changes() {
        let d = dir(&[]);
        let creds = Credentials::in_dir(&d, "DOCKER_CONFIG");
        let found = creds.lookup("reg:5000").await.unwrap();
        assert_eq!(found.auth, None);
        assert!(found.source.contains("does not exist"), "{}", found.source);
        let write = |pair: &str| {
            let tmp = d.join("config.json.tmp");
            let json = format!(
                r#"{{"auths": {{"reg:5000": {{"auth": "{}"}}}}}}"#,
                b64(pair)
            );
            std::fs::write(&tmp, json).unwrap();
            std::fs::rename(&tmp, d.join("config.json")).unwrap();
        };
        write("alice:one");
        let found = creds.lookup("reg:5000").await.unwrap();
        assert_eq!(found.auth.unwrap().password, "one");
        assert_eq!(
            found.source,
            format!("auths[\"reg:5000\"] in {}", d.join("config.json").display())
        );
        write("alice:two");
        let found = creds.clone().lookup("reg:5000").await.unwrap();
        assert_eq!(found.auth.unwrap().password, "two");
        std::fs::write(d.join("config.json"), "{ not json").unwrap();
        let e = creds.lookup("reg:5000").await.unwrap_err();
        assert!(matches!(e, CredentialsError::Config { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn helpers_are_run_with_the_protocol_and_a_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir(&[]);
        let helper = |name: &str, script: &str| {
            let p = d.join(format!("docker-credential-{name}"));
            std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        helper(
            "ok",
            r#"read server; [ "$1" = get ] && printf '{"ServerURL":"%s","Username":"bob","Secret":"pw-%s"}' "$server" "$server""#,
        );
        helper(
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        helper("slow", "sleep 5");
        // By path: the same protocol as through PATH.
        let run = |name: &str, t: u64| {
            let p = d.join(format!("docker-credential-{name}"));
            async move { ask(&p, "reg:5000", Duration::from_secs(t)).await }
        };
        let out = run("ok", 5).await.unwrap().unwrap();
        let a = helper_auth(&out, "reg:5000").unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("bob", "pw-reg:5000")
        );
        assert_eq!(run("none", 5).await.unwrap(), None);
        let started = std::time::Instant::now();
        let e = run("slow", 1).await.unwrap_err();
        assert!(e.contains("did not answer within 1 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(4));
        let e = run_helper("drover-test-no-such-helper", "r", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("not on PATH"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
