# The two set-up commands of the README:  make mnist  (the MNIST reproduction)  and  make test.
PYTHON ?= python3
VENV   ?= .venv
DATA   ?= ../shared/data
OUT    ?= runs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

install: $(VENV)/.installed

mnist: $(VENV)/.installed
	$(VENV)/bin/linpath run mnist_lenet_300_100 --data-root $(DATA) --out $(OUT)

test: $(VENV)/.installed
	LINPATH_TEST_DATA=$(DATA) $(VENV)/bin/python -m pytest -q

.PHONY: install mnist test
