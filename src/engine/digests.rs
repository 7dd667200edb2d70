//! Image digests: what a registry says a tag points at, and which registry digest an image
//! the engine holds was pulled as. Both go through the engine, so they use its registry
//! configuration (mirrors, insecure registries, CA files).
//!
//! The registry's answer is `GET /distribution/{name}/json`: the engine resolves the tag to
//! its manifest's digest (a manifest list's when the tag has one, as a pull records it)
//! without pulling anything.

use bollard::Docker;

use super::credentials::Credentials;
use super::error::{EngineError, Kind};
use super::images::Reference;

/// The digest (`sha256:…`) the registry holds for `image`'s tag (`latest` when it names
/// none).
/// Asked with the login `credentials` has for its registry, as a pull is.
pub async fn registry_digest(
    docker: &Docker,
    image: &str,
    credentials: &Credentials,
) -> Result<String, EngineError> {
    let reference = with_tag(image);
    let found = credentials
        .for_image(image)
        .await
        .map_err(|e| EngineError::new(Kind::Credentials, e.to_string()))?;
    let auth = found.auth.as_ref().map(super::images::engine_auth);
    let answer = docker
        .inspect_registry_image(&reference, auth)
        .await
        .map_err(EngineError::from)?;
    answer
        .descriptor
        .digest
        .filter(|d| d.starts_with("sha256:"))
        .ok_or_else(|| {
            EngineError::new(
                Kind::Other,
                format!("the registry gave no digest for {reference}"),
            )
        })
}

/// The registry digest the engine's copy of `image` was pulled (or pushed) as, when it has
/// the image and knows one; an image built or loaded locally has none.
pub async fn local_digest(docker: &Docker, image: &str) -> Result<Option<String>, EngineError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(digest_of(image, &inspect.repo_digests.unwrap_or_default())),
        Err(e) => {
            let e = EngineError::from(e);
            if e.is_not_found() { Ok(None) } else { Err(e) }
        }
    }
}

/// `image` with `:latest` when it has neither tag nor digest.
pub fn with_tag(image: &str) -> String {
    let r = Reference::parse(image);
    match (r.tag, r.digest) {
        (None, None) => format!("{}:latest", r.name),
        _ => image.to_string(),
    }
}

/// The digest in `repo_digests` (`name@sha256:…`) that belongs to `image`'s repository.
/// The engine writes Docker Hub's names short (`redis`, `team/app`), as `image` may be.
pub fn digest_of(image: &str, repo_digests: &[String]) -> Option<String> {
    let repo = familiar(Reference::parse(image).name);
    repo_digests.iter().find_map(|rd| {
        let (name, digest) = rd.split_once('@')?;
        (familiar(name) == repo).then(|| digest.to_string())
    })
}

/// A repository name as the Docker CLI shows it: without `docker.io/` and `library/`.
fn familiar(name: &str) -> &str {
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    name.strip_prefix("library/").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_without_a_tag_asks_for_latest() {
        assert_eq!(with_tag("busybox"), "busybox:latest");
        assert_eq!(with_tag("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(with_tag("reg:5000/app:v2"), "reg:5000/app:v2");
        assert_eq!(with_tag("app@sha256:ab"), "app@sha256:ab");
    }

    #[test]
    fn the_repo_digest_of_the_images_own_repository_is_found() {
        let rds = vec![
            "other/app@sha256:11".to_string(),
            "127.0.0.1:5000/team/app@sha256:22".to_string(),
        ];
        assert_eq!(
            digest_of("127.0.0.1:5000/team/app:v1", &rds).as_deref(),
            Some("sha256:22")
        );
        assert_eq!(digest_of("team/app", &rds), None);
        let hub = vec!["redis@sha256:33".to_string()];
        assert_eq!(
            digest_of("docker.io/library/redis:7", &hub).as_deref(),
            Some("sha256:33")
        );
        assert_eq!(digest_of("redis", &hub).as_deref(), Some("sha256:33"));
    }
}
