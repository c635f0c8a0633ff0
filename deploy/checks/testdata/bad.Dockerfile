# Everything check_dockerfiles.py must reject (check_dockerfiles_test.py lists it).
FROM debian:bookworm AS build
WORKDIR /src
COPY . .
RUN make -j8

FROM nvidia/cuda:13.0.0-devel-ubuntu24.04
RUN apt-get update && apt-get install -y gcc
COPY . /opt/ite
USER root
