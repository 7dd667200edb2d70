# drover as a container image: a static binary on an empty base, running as a non-root user.
#
#   docker build -t drover .
#   docker run -d --restart unless-stopped --name drover \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v "$PWD/app:/config:ro" --read-only drover run -p app
#
# Without registry access (no rust image to pull), build the same runtime stage from a binary
# built on the host: deploy/build-image.sh (see docs/operations.md).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN deploy/static-build.sh /out/drover

FROM scratch AS build
COPY --from=builder /out/drover /drover

# --- runtime stage (keep identical to deploy/Dockerfile.runtime) ---
FROM scratch AS runtime
COPY --from=build /drover /drover
# No user database on an empty image: a numeric uid. Add the Docker socket's group at run
# time (--group-add), or mount a TLS bundle instead of the socket.
USER 65532:65532
# The config directory (compose.yml, scale file, .env) is mounted here, read-only; drover
# writes nothing to its filesystem (--read-only works).
WORKDIR /config
# /livez /readyz /metrics /status. Loopback by default; DROVER_LISTEN=0.0.0.0:9477 to scrape
# from outside the container.
EXPOSE 9477
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["/drover", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/drover"]
CMD ["run"]
