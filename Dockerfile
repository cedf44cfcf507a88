# syntax=docker/dockerfile:1
#
# The trailvault container image (README.md, "Container image"; docs/deploying-to-aws.md, step 5):
#
#   docker build -t trailvault:0.1.0 .
#   docker run --rm -v "$PWD/trailvault.toml:/etc/trailvault.toml:ro" trailvault:0.1.0 \
#     --config /etc/trailvault.toml status
#
# Multi-stage: the release binary is built in a Rust image; the runtime is distroless
# (glibc and CA certificates, no package manager, no shell of its own) running as a
# non-root user. It holds the trailvault binary and, for the entry point of
# infra/cloudformation/collector-runtime.json (which writes the configuration to /tmp
# and runs `timeout ... trailvault`), a static busybox linked as /bin/sh and
# /bin/timeout only. scripts/test checks this file (scripts/lint-dockerfile).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p trailvault \
    && install -D -m 0755 target/release/trailvault /out/trailvault

FROM busybox:1.37-musl AS shell
RUN mkdir -p /out \
    && cp /bin/busybox /out/busybox \
    && ln -s busybox /out/sh \
    && ln -s busybox /out/timeout

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=shell /out/ /bin/
COPY --from=build /out/trailvault /usr/local/bin/trailvault
# The uid and gid the runtime template's EFS access point writes the store as.
USER 10001:10001
WORKDIR /var/lib/trailvault
ENTRYPOINT ["/usr/local/bin/trailvault"]
CMD ["--help"]
