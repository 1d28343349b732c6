#!/usr/bin/env bash
# Builds the CPU image with podman from docker/cpu.Dockerfile.
#
# llama.cpp is not compiled a second time: when pip's wheel cache holds the
# llama-cpp-python wheel that the venv build (`make setup`) made, it goes into
# docker/wheels/, and the Dockerfile installs it from there. Without one, the
# Dockerfile compiles llama.cpp itself (portable flags; about 10 min on 2 cores).
#
# Usage: scripts/image/build-cpu-image.sh [TAG]
#   BASE_IMAGE  the base (default localhost/debian-base:local, from debian-base.sh)
#   PIP         the pip whose cache holds the wheel (default .venv/bin/pip)
#   NO_WHEEL=1  ignore the cached wheel: compile in the build
#   NO_CACHE=1  no podman layer cache (a cold build)
#   KZERO_EXTRAS  kzero extras to add (storage: s3://, gs://, hf:// for the warm Job)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/image/podman-env.sh

TAG="${1:-localhost/kzero-cpu:check}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian-base:local}"
PIP="${PIP:-.venv/bin/pip}"
WHEELS=docker/wheels
# The version the Dockerfile installs (tests/chart/test_dockerfiles.py keeps it equal to pyproject.toml's pin).
VERSION="$(sed -n 's/^ARG LLAMA_CPP_PYTHON_VERSION=//p' docker/cpu.Dockerfile)"

ensure_image_tools
find "$WHEELS" -name '*.whl' -delete
wheel=""
if [[ "${NO_WHEEL:-0}" != 1 && -x "$PIP" ]]; then
  wheel="$("$PIP" cache list --format=abspath "llama_cpp_python-$VERSION" | head -n1)"
fi
if [[ -n "$wheel" ]]; then
  cp "$wheel" "$WHEELS/"
  echo "build-cpu-image: llama-cpp-python $VERSION from pip's wheel cache ($(basename "$wheel"))"
else
  echo "build-cpu-image: no cached llama-cpp-python $VERSION wheel: the build compiles llama.cpp"
fi

started=$SECONDS
# The host's CA bundle: pip inside the build trusts what the host trusts (this
# project's machines reach PyPI through a TLS-inspecting proxy whose CA only
# the host's bundle has).
podman build $([[ "${NO_CACHE:-0}" == 1 ]] && echo --no-cache) \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg KZERO_EXTRAS="${KZERO_EXTRAS:-}" \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --file docker/cpu.Dockerfile --tag "$TAG" .
echo "build-cpu-image: $TAG built in $((SECONDS - started)) s," \
  "$(podman image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1 / 1e6}')"
