//! Pulling images: the one path every pull takes.
//!
//! A reference without a tag is pulled as `latest`, as the Docker CLI and compose do: the
//! Engine API pulls *every* tag of the repository when the tag is left out. Errors the
//! engine streams in the middle of a pull (a missing manifest, a refused login) end it.

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;

use super::error::{EngineError, Kind};

/// Pull `image` (for `platform`, when given) onto the engine.
pub async fn pull(docker: &Docker, image: &str, platform: Option<&str>) -> Result<(), EngineError> {
    let (repo, tag) = split_reference(image);
    let opts = CreateImageOptions {
        from_image: Some(repo.to_string()),
        tag: Some(tag.unwrap_or("latest").to_string()),
        platform: platform.unwrap_or_default().to_string(),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(opts), None, None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(EngineError::from)?;
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            return Err(EngineError::new(Kind::Other, message));
        }
    }
    Ok(())
}

/// `repo[:tag]` or `repo@digest` -> (repo, tag or digest). A registry port
/// (`host:5000/app`) is not a tag.
pub fn split_reference(image: &str) -> (&str, Option<&str>) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, Some(digest));
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (image, None),
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn splits_image_references() {
        assert_eq!(split_reference("busybox"), ("busybox", None));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_reference("reg:5000/team/app"),
            ("reg:5000/team/app", None)
        );
        assert_eq!(
            split_reference("reg:5000/team/app:v2"),
            ("reg:5000/team/app", Some("v2"))
        );
        assert_eq!(
            split_reference("app@sha256:abc"),
            ("app", Some("sha256:abc"))
        );
    }
}
