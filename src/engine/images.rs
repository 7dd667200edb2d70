//! Pulling images: the one path every pull takes.
//!
//! What is named is what is pulled: a reference without a tag is pulled as `latest`, as the
//! Docker CLI and compose do (the Engine API pulls *every* tag of the repository when the
//! tag is left out); `name@sha256:…` pulls that digest, and a tag with a digest pulls the
//! digest (the tag is only a reminder for people). The login for the image's registry comes
//! from [`Credentials`], as the CLI finds it. Errors the engine streams in the middle of a
//! pull (a missing manifest, a refused login) end it; a refused or missing login is one
//! line naming the registry and where drover looked, never a secret.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;

use super::credentials::{self, Credentials, Found, RegistryAuth};
use super::error::{EngineError, Kind};

/// Pull `image` (for `platform`, when given) onto the engine, logged in with what
/// `credentials` has for its registry.
pub async fn pull(
    docker: &Docker,
    image: &str,
    platform: Option<&str>,
    credentials: &Credentials,
) -> Result<(), EngineError> {
    let found = credentials
        .for_image(image)
        .await
        .map_err(|e| EngineError::new(Kind::Credentials, e.to_string()))?;
    let (repo, tag) = pull_parameters(image);
    let opts = CreateImageOptions {
        from_image: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        platform: platform.unwrap_or_default().to_string(),
        ..Default::default()
    };
    let auth = found.auth.as_ref().map(engine_auth);
    let mut stream = docker.create_image(Some(opts), None, auth);
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(info) => match info.error_detail.and_then(|d| d.message) {
                Some(m) => m,
                None => continue,
            },
            // An error status (before the stream began) keeps its kind unless it is about
            // the login.
            Err(e) => {
                let e = EngineError::from(e);
                if !credentials::is_auth_failure(&e.message) {
                    return Err(e);
                }
                e.message
            }
        };
        return Err(refused(image, &found, &message));
    }
    Ok(())
}

/// The engine's message, as one line: when the registry wants a login, which registry,
/// and what drover had for it. Secrets that came back are scrubbed.
fn refused(image: &str, found: &Found, message: &str) -> EngineError {
    let message = match &found.auth {
        Some(a) => a.redact(message.trim()),
        None => message.trim().to_string(),
    };
    if !credentials::is_auth_failure(&message) {
        return EngineError::new(Kind::Other, message);
    }
    let registry = credentials::registry_of(image);
    let line = match &found.auth {
        Some(_) => format!(
            "registry {registry} refused the login from {} ({message}); log in again with \
             docker login {registry}",
            found.source
        ),
        None => format!(
            "registry {registry} wants a login and drover has none for it: {} ({message}); \
             run docker login {registry} with that DOCKER_CONFIG",
            found.source
        ),
    };
    EngineError::new(Kind::Credentials, line)
}

/// A login as the client library sends it (the `X-Registry-Auth` header).
pub(super) fn engine_auth(a: &RegistryAuth) -> DockerCredentials {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    DockerCredentials {
        username: some(&a.username),
        password: some(&a.password),
        identitytoken: some(&a.identity_token),
        serveraddress: some(&a.server_address),
        ..Default::default()
    }
}

/// An image reference's parts: the name, its tag and its digest, when given. A registry
/// port (`host:5000/app`) is not a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference<'a> {
    pub name: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> Reference<'a> {
    pub fn parse(image: &'a str) -> Reference<'a> {
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (image, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        Reference { name, tag, digest }
    }
}

/// What a pull of `image` asks the engine for: the name, and the digest when there is
/// one, else the tag, else `latest`.
pub fn pull_parameters(image: &str) -> (&str, &str) {
    let r = Reference::parse(image);
    (r.name, r.digest.or(r.tag).unwrap_or("latest"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_named_is_what_is_pulled() {
        assert_eq!(pull_parameters("busybox"), ("busybox", "latest"));
        assert_eq!(pull_parameters("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            pull_parameters("reg:5000/team/app"),
            ("reg:5000/team/app", "latest")
        );
        assert_eq!(
            pull_parameters("reg:5000/team/app:v2"),
            ("reg:5000/team/app", "v2")
        );
        assert_eq!(pull_parameters("app@sha256:abc"), ("app", "sha256:abc"));
        // A tag with a digest: the digest, as the CLI does.
        assert_eq!(
            pull_parameters("reg:5000/app:v1@sha256:abc"),
            ("reg:5000/app", "sha256:abc")
        );
        assert_eq!(
            Reference::parse("reg:5000/app:v1@sha256:abc"),
            Reference {
                name: "reg:5000/app",
                tag: Some("v1"),
                digest: Some("sha256:abc")
            }
        );
    }

    #[test]
    fn a_refused_login_names_the_registry_and_where_drover_looked_never_the_secret() {
        let found = Found {
            auth: Some(RegistryAuth {
                username: "alice".into(),
                password: "hunter22".into(),
                server_address: "reg:5000".into(),
                ..Default::default()
            }),
            source: "auths[\"reg:5000\"] in /config/config.json".into(),
        };
        let e = refused(
            "reg:5000/app",
            &found,
            "Head \"http://reg:5000/v2/app/manifests/latest\": unauthorized: hunter22",
        );
        assert_eq!(e.kind, Kind::Credentials);
        assert!(e.message.starts_with("registry reg:5000 refused the login from auths[\"reg:5000\"] in /config/config.json"), "{e}");
        assert!(!e.message.contains("hunter22"), "{e}");
        let none = Found {
            auth: None,
            source: "no entry for reg:5000 in /config/config.json".into(),
        };
        let e = refused("reg:5000/app", &none, "no basic auth credentials");
        assert_eq!(
            e.message,
            "registry reg:5000 wants a login and drover has none for it: no entry for reg:5000 \
             in /config/config.json (no basic auth credentials); run docker login reg:5000 \
             with that DOCKER_CONFIG"
        );
        let e = refused("reg:5000/app", &none, "manifest unknown");
        assert_eq!(
            (e.kind, e.message.as_str()),
            (Kind::Other, "manifest unknown")
        );
    }
}
