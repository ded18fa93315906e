# The two commands of the README: `make demo` and `make test`. Each does its own set-up.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: demo test setup mosquitto chromium postgresql clean

setup: $(VENV)/.installed mosquitto

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

mosquitto:
	@bash tools/ensure-mosquitto

chromium:
	@bash tools/ensure-chromium

postgresql:
	@bash tools/ensure-postgresql

demo: setup
	$(BIN)/vericam demo

test: setup chromium postgresql
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
