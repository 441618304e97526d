# syntax=docker/dockerfile:1
# deskew images. Two targets:
#   docker build -t deskew .                          the static binary on `scratch` (publish, gc,
#                                                     verify, releases, HTTP probe, demo): ~30 MB, non-root
#   docker build --target browser -t deskew:browser . the same binary with Debian's Chromium, for
#                                                     `deskew probe --mode browser`
# The binary is linked statically against musl: no shared library, any x86_64 Linux.

FROM rust:1-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p deskew-cli \
 && cp target/x86_64-unknown-linux-musl/release/deskew /deskew \
 && /deskew --version

FROM debian:bookworm-slim AS certs
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM scratch AS browser-less
COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /deskew /deskew
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# A numeric non-root user: scratch has no /etc/passwd, and Kubernetes' runAsNonRoot needs a number.
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["/deskew"]
CMD ["--help"]

FROM debian:bookworm-slim AS browser
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium ca-certificates fonts-liberation \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 65532 --create-home deskew
COPY --from=build /deskew /usr/local/bin/deskew
USER 65532:65532
WORKDIR /home/deskew
ENTRYPOINT ["deskew"]
CMD ["--help"]

# The default target (last stage wins otherwise): the scratch image.
FROM browser-less AS default
