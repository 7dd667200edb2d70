//! Connecting to an engine with the Docker CLI's rules (DOCKER_HOST, DOCKER_TLS_VERIFY,
//! DOCKER_CERT_PATH and the matching flags), negotiating the API version, and turning
//! connection failures into one line a user can act on.
