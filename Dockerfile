# syntax=docker/dockerfile:1
#
# sentry container image.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t sentry:0.1.0 .
#
# Three stages:
#   build    compiles the release binary with the official Rust image;
#   kubectl  downloads a pinned kubectl for the target architecture and checks its sha256;
#   runtime  Debian slim with git, ca-certificates, bash, kubectl and the binary, as UID/GID 10001.
#
# Needs BuildKit (the default builder of current Docker): TARGETARCH is filled in by it.
# Nothing secret is read at build time; tokens come from the environment at run time
# (in Kubernetes: from the Secret, see k8s-cronjob.yaml).

# Base images. Both are Debian 12 (bookworm) so the binary links against the same glibc it
# runs with. Pin a digest for reproducible releases, e.g.
#   --build-arg RUNTIME_IMAGE=debian:bookworm-slim@sha256:<digest>
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

########################################################################################
FROM ${RUST_IMAGE} AS build

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or Cargo.lock
# change, not on every source edit. A stub crate with the same targets lets cargo build all
# dependencies; its own artifacts are then forgotten (the fingerprints are removed) so the
# real sources below are always recompiled, whatever their timestamps.
# (rust:*-slim already carries gcc and libc6-dev, which `ring` needs.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/sentry-* target/release/deps/sentry-* \
        target/release/deps/libsentry-* target/release/sentry

COPY src ./src
RUN cargo build --release --locked \
    && ./target/release/sentry --version

########################################################################################
# kubectl is fetched in a stage of its own so that curl never reaches the runtime image.
# It runs on the build machine's own platform (no emulation needed in a multi-arch build)
# and downloads the binary of the target platform.
FROM --platform=$BUILDPLATFORM ${RUNTIME_IMAGE} AS kubectl

# kubectl is pinned to a version and to the sha256 of each architecture's binary, written
# here rather than fetched next to the binary at build time: a checksum downloaded from the
# same place as the file only proves the download is complete, a pinned one also proves it
# is the file that was reviewed. To change the version, update all three ARGs together from
#   https://dl.k8s.io/release/<version>/bin/linux/<arch>/kubectl.sha256
# kubectl is supported within one minor version of the cluster's API server; for an older
# cluster build with the kubectl of its minor (and that version's two checksums).
# A wrong checksum cannot ship a binary: sha256sum --check fails the build.
ARG KUBECTL_VERSION=v1.37.1
ARG KUBECTL_SHA256_AMD64=65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8
ARG KUBECTL_SHA256_ARM64=ff749f4b78d9c4f1ec87307df9b50119ed819e2094aa9810cb9acffc3286c8c7
ARG TARGETARCH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Package versions are not pinned (DL3008): bookworm's archive keeps only the current
# version of each package, so a pin breaks the build at the next security update. The base
# image tag (or digest) is what pins the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN case "${TARGETARCH}" in \
        amd64) sha256="${KUBECTL_SHA256_AMD64}" ;; \
        arm64) sha256="${KUBECTL_SHA256_ARM64}" ;; \
        *) echo "no pinned kubectl checksum for TARGETARCH='${TARGETARCH}' (amd64 and arm64 are supported; build with BuildKit)" >&2; exit 1 ;; \
    esac \
    && curl -fsSL --retry 3 -o /usr/local/bin/kubectl \
        "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
    && echo "${sha256}  /usr/local/bin/kubectl" | sha256sum --check --strict \
    && chmod 0755 /usr/local/bin/kubectl

########################################################################################
FROM ${RUNTIME_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="sentry" \
      org.opencontainers.image.description="Watches Git repositories and deploys when they change" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git: clones deploy repositories and lists heads of `repo_type: git` repositories.
# ca-certificates: every HTTPS call (forge APIs, git over HTTPS, the Kubernetes API).
# bash: deployment commands run in `sh` (dash, always present); bash is there for the
#       deploy scripts of QA repositories that need it.
# No openssh-client: in a cluster use HTTPS URLs with tokens. SSH URLs (git@host:...) need
# openssh-client plus a mounted key and known_hosts; add them in a derived image.
# (DL3008: see the kubectl stage.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bash ca-certificates git \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged identity; the Kubernetes manifest runs as the same UID/GID.
# HOME points into the writable scratch directory: git reads its config from there (and
# finds none), kubectl keeps its discovery cache there. Nothing in the image is written at
# run time, so the root filesystem can be read-only; /tmp/sentry is an emptyDir in
# Kubernetes (with plain docker: --read-only --tmpfs /tmp/sentry:mode=1777).
# (--no-log-init: with a high UID, lastlog/faillog would otherwise become large sparse files.)
RUN groupadd --gid 10001 sentry \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp/sentry/home --no-create-home \
        --no-log-init --shell /usr/sbin/nologin sentry \
    && install -d -o 10001 -g 10001 -m 0750 /tmp/sentry \
    && install -d -m 0755 /etc/sentry

COPY --from=kubectl /usr/local/bin/kubectl /usr/local/bin/kubectl
COPY --from=build /src/target/release/sentry /usr/local/bin/sentry

# Fail the build here rather than in the first CronJob run if a binary cannot start
# (wrong architecture, missing shared library).
RUN sentry --version && kubectl version --client && git --version

ENV SENTRY_TMP_DIR=/tmp/sentry \
    SENTRY_CONFIG_PATH=/etc/sentry/sentry.yaml \
    HOME=/tmp/sentry/home

USER 10001:10001
WORKDIR /tmp/sentry

ENTRYPOINT ["sentry"]
CMD ["poll", "--once"]
