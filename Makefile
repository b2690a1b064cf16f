# stellarnn: the two set-up commands are `make run` (main job) and `make test` (tests).
# Each creates .venv, installs pinned dependencies (torch==2.13.0 CPU wheel) and fetches data.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stellarnn-installed
OUT    ?= outputs

.PHONY: run test venv data clean-venv

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

data: $(STAMP)
	$(BIN)/stellarnn data fetch

run: data
	$(BIN)/stellarnn main --out $(OUT)

test: data
	$(BIN)/python -m pytest  # -q comes from addopts in pyproject.toml (a second -q would hide the summary line)

clean-venv:
	rm -rf $(VENV)
