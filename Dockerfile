# The consumer: a static musl binary on distroless/static, run as a numeric non-root user, no shell inside.
# Build from the repository root: `make images` (or `docker build -t surge-consumer:0.1.0 .`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY generator ./generator
COPY bench ./bench
# musl links statically with the toolchain's own crt and libc: no C dependencies, nothing else to install.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
    && rustup target add "$target" \
    && cargo build --release --locked --target "$target" --bin consumer \
    && cp "target/$target/release/consumer" /consumer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /consumer /consumer
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/consumer"]
