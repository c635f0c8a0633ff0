# syntax=docker/dockerfile:1
# The CPU image: ite-scheduler, with the CPU ite-worker, ite-serve and ite-client beside it (the
# `cpu` overlay runs its workers from this image too). Built from source on Debian 12 with the
# commands CI runs (scripts/setup.sh, then scripts/build.sh, the cmake line of scripts/test.sh);
# the final stage has the binaries and the libraries they need (scripts/bundle.sh), no build
# tools, and runs as an unprivileged user. Build from the repository root:
#   docker build -f deploy/docker/scheduler.Dockerfile \
#     --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) \
#     -t REGISTRY/ite-scheduler:TAG .
# (deploy/docker/build-images.sh does this for both images and pushes them.)

FROM debian:bookworm AS build
WORKDIR /src
COPY . .
# ITE_BUILD_JOBS: parallel compile jobs (each takes up to ~1.5 GB of memory).
ARG ITE_BUILD_JOBS=4
RUN ITE_SETUP_PACKAGES_ONLY=1 scripts/setup.sh \
    && ITE_BUILD_JOBS="${ITE_BUILD_JOBS}" \
       scripts/build.sh /build ite-scheduler ite-worker ite-serve ite-client \
    && scripts/bundle.sh /build /out/ite

FROM debian:bookworm-slim
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="ite-infer scheduler (CPU)" \
      org.opencontainers.image.description="ite-scheduler, CPU ite-worker, ite-serve, ite-client" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
RUN groupadd --system --gid 10001 ite \
    && useradd --system --uid 10001 --gid ite --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin ite
COPY --from=build /out/ite /opt/ite
ENV PATH=/opt/ite/bin:$PATH
USER 10001:10001
EXPOSE 50051 50052 8000
CMD ["ite-scheduler", "--help"]
