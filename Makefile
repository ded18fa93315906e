# The two commands of the README: `make demo` and `make test`. Each does its own set-up.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: demo test setup mosquitto chromium postgresql clean

setup: $(VENV)/.installed mosquitto

$(VENV)/.installed: pyproject.toml setup.py tools/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c tools/constraints.txt -e '.[dev]'
	touch $@

mosquitto:
	@bash tools/ensure-mosquitto

chromium:
	@bash tools/ensure-chromium

postgresql:
	@bash tools/ensure-postgresql

demo: setup
	$(BIN)/vericam demo

# Three workers on two cores: most tests wait on real processes (MicroPython, Mosquitto, the
# gateway), about 0.85 of a core busy on average with two workers (8 m 52 s, against 6 m 58 s with
# three, same commit, same machine). loadfile keeps each file on one worker, so its module
# fixtures and cached scenario runs are set up once.
test: setup chromium postgresql
	$(BIN)/pytest -q -n 3 --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
