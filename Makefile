# One command per job, the same for people and CI. Each target (re)creates .venv when
# pyproject.toml is newer than the last install, so a fresh clone needs nothing but Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test check demo bench serve load-smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	mkdir -p reports
	$(BIN)/python -m pytest -q --junitxml=reports/junit.xml

check: $(STAMP)
	$(BIN)/ruff check mock_server client contract_tests load_tests bench tests
	$(BIN)/ruff format --check mock_server client contract_tests load_tests bench tests
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/python -m load_tests demo

serve: $(STAMP)
	$(BIN)/python -m mock_server serve

bench: $(STAMP)
	$(BIN)/python -m bench

load-smoke: $(STAMP)
	$(BIN)/python -m load_tests run --scenario steady --duration 10 --users 2 --out load_reports/smoke

clean:
	rm -rf $(VENV) reports .mock_server load_reports bench/results
