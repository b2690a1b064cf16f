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

# The documentation (docs/): Sphinx + numpydoc come with requirements.lock (the `docs` extra of
# pyproject.toml names them for pip users); the four tutorials run during the build, warnings are
# errors; then every docstring example of src/ runs as a doctest.  Open docs/_build/html/index.html.
.PHONY: docs

docs: data
	rm -rf docs/_build/html docs/_build/doctrees
	OMP_NUM_THREADS=1 $(BIN)/sphinx-build -W --keep-going -E -d docs/_build/doctrees -b html docs docs/_build/html
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider --doctest-modules src/stellarnn
