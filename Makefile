# The two set-up commands of the README:  make mnist  (the MNIST reproduction)  and  make test.
PYTHON ?= python3
VENV   ?= .venv
DATA   ?= ../shared/data
OUT    ?= runs

# The main job's install: torch and linpath's own dependencies, nothing of the test extras.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e .
	touch $@

# The tests' install: the same venv plus the test extras (pytest, ruff, transformers, Lightning, ...).
$(VENV)/.installed-test: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

install: $(VENV)/.installed

mnist: $(VENV)/.installed
	$(VENV)/bin/linpath run mnist_lenet_300_100 --data-root $(DATA) --out $(OUT)

# Everything: lint, the import layers, then every test (end-to-end and fault tests included).
test: $(VENV)/.installed-test lint
	LINPATH_TEST_DATA=$(DATA) $(VENV)/bin/python -m pytest -q

# The fast unit tests only (no end-to-end training, subprocesses or torchrun): under a minute.
test-fast: $(VENV)/.installed-test
	LINPATH_TEST_DATA=$(DATA) $(VENV)/bin/python -m pytest -q -m "not slow and not cuda"

# The GPU check (docs/gpu.md): on a machine with an NVIDIA GPU, no network; about 10 minutes on an H100.
# No install step: it uses $(VENV) when present, else python3 with linpath and a CUDA torch installed.
GPU_OUT = $(if $(filter command line,$(origin OUT)),$(OUT),gpu-out)
gpu-check:
	GPU_CHECK_PYTHON=$(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3) \
		benchmarks/gpu_check.sh $(GPU_OUT) $(DATA)

# The GPU study (docs/gpu.md): one replicate of the paper's protocol per GPU lease, within 9 minutes,
# no network; OUT then holds what to commit as docs/results/gpu/<preset>/replicate-<R>/.
# PRESET (default cifar_resnet_20) and REPLICATE (default: the next one not committed) are optional.
gpu-study:
	GPU_STUDY_PYTHON=$(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3) \
		benchmarks/gpu_study.sh $(GPU_OUT) $(DATA) $(if $(PRESET),--preset $(PRESET)) \
		$(if $(REPLICATE),--replicate $(REPLICATE)) $(if $(filter 1,$(DRY_RUN)),--dry-run)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/lint-imports --no-cache

.PHONY: install mnist test test-fast lint gpu-check gpu-study
