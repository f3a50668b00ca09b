# The consumer: a glibc build on distroless/cc (glibc, no shell), run as a numeric non-root user.
# glibc, not musl: musl's allocator served half the requests per second in a same-machine check, and glibc's
# mallinfo2 is what makes `allocator_resident_bytes` real (musl has no equivalent: it would report live bytes).
# Build from the repository root: `make images` (or `docker build -t surge-consumer:0.1.0 .`).
# tests/deploy/crosscheck.rs copies what the COPY lines name into an empty directory and runs this cargo command there.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY capacity ./capacity
COPY keda ./keda
COPY generator ./generator
COPY harness ./harness
COPY bench ./bench
COPY sim ./sim
COPY tune ./tune
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p surge-consumer --bin consumer \
    && cp target/release/consumer /consumer

# Debian 12's glibc, the same as the build stage's (rust:1.95-bookworm).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /consumer /consumer
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/consumer"]
