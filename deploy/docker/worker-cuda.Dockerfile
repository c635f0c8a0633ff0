# syntax=docker/dockerfile:1
# The GPU image: ite-worker with the CUDA backend, on NVIDIA's CUDA runtime image. Built on
# Debian 12 with the commands CI runs (scripts/setup.sh, then scripts/build.sh), with the CUDA
# toolkit of NVIDIA's devel image copied in, so compiler, toolkit and flags are those of CI (its
# machines are Debian 12 with CUDA 13.0). The final stage has the binaries and their non-CUDA
# libraries (scripts/bundle.sh; cudart and cuBLAS come from the base), no build tools, and runs
# as an unprivileged user. Needs an NVIDIA driver that supports CUDA 13.0 on the node.
#   docker build -f deploy/docker/worker-cuda.Dockerfile \
#     --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse HEAD) \
#     -t REGISTRY/ite-worker-cuda:TAG .
# CUDA_ARCHS: the GPU architectures compiled for (cmake's CMAKE_CUDA_ARCHITECTURES); fewer
# builds faster, e.g. "90a" for H100/H200 only.

ARG CUDA_VERSION=13.0.0
ARG CUDA_DIR=cuda-13.0
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS toolkit

FROM debian:bookworm AS build
ARG CUDA_DIR
COPY --from=toolkit /usr/local/${CUDA_DIR} /usr/local/cuda
WORKDIR /src
COPY . .
ARG ITE_BUILD_JOBS=4
ARG CUDA_ARCHS="80;86;89;90a"
RUN ITE_SETUP_PACKAGES_ONLY=1 scripts/setup.sh \
    && ITE_BUILD_JOBS="${ITE_BUILD_JOBS}" ITE_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS}" \
       scripts/build.sh /build ite-worker ite-client \
    && ITE_BUNDLE_HOST_CUDA=1 scripts/bundle.sh /build /out/ite

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="ite-infer worker (CUDA)" \
      org.opencontainers.image.description="ite-worker with the CUDA backend, ite-client" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
RUN groupadd --system --gid 10001 ite \
    && useradd --system --uid 10001 --gid ite --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin ite
COPY --from=build /out/ite /opt/ite
ENV PATH=/opt/ite/bin:$PATH
USER 10001:10001
EXPOSE 50052
CMD ["ite-worker", "--list-devices"]
