# The Cloud Run image of `all-docs serve`: built on Debian bookworm, run on distroless (same
# glibc), as a non-root user, with nothing in the final image but the binary, glibc, libgcc and
# CA certificates. Checked offline by scripts/check-deploy (hadolint, checkov).
#
#   docker build -t IMAGE .        (or: gcloud builds submit --tag IMAGE .)
#
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: Cloud Run ignores it and probes the container itself (startup probe on /readyz, liveness on /healthz, see service.yaml); distroless has no shell or curl to run one anyway.

# Build stage: the toolchain and the sources never reach the final image. The Rust version
# matches the one the project is developed and tested with (rustup's stable on the dev machines).
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when a manifest or Cargo.lock
# changes, not on every source edit. Stub sources for both workspace crates (the binary and
# all-docs-core) let cargo build every dependency.
COPY Cargo.toml Cargo.lock ./
COPY crates/core/Cargo.toml ./crates/core/
RUN mkdir src crates/core/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs crates/core/src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src crates/core/src \
    && cargo clean --release --locked --package all-docs --package all-docs-core

# The crates themselves. The stubs' artifacts were cleaned above, so cargo cannot mistake them
# for an up-to-date build of the real sources.
COPY crates/core/src ./crates/core/src
COPY src ./src
RUN cargo build --release --locked --bin all-docs \
    && cp target/release/all-docs /all-docs

# Run stage: distroless `cc` has glibc, libgcc and CA certificates (for HTTPS to the origins
# and Google APIs), no shell and no package manager. Its `nonroot` user is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /all-docs /all-docs
USER 65532:65532
# Cloud Run sends traffic to $PORT (8080 unless configured otherwise); the service reads it.
EXPOSE 8080
ENTRYPOINT ["/all-docs", "serve"]
