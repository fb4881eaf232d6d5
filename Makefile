# The two set-up commands of the README:
#   make book   builds the environment if missing, generates SynthReID, trains the book's runs
#               (the trunk on every core, then one single-thread process per core), executes
#               every notebook with papermill over them (profile "synthetic", scope "core": each
#               paper's headline rows on 3 seeds), renders the HTML book to build/book/_build/html
#   (make book-full: the same with scope "full", every ablation, sweep and control: hours on a CPU)
#   make test   builds the environment if missing, runs the unit tests, then nbval over the
#               committed executed notebooks (profile "smoke") in the portable numeric mode
#               (reidnb/numerics.py), in which the smoke runs give the same numbers on every
#               x86-64 CPU, so the committed outputs are compared exactly; then the chapters
#               with a scope once more in the core scope, over the cached smoke runs
#               (tools/check_core_scope.py: the path `make book` takes)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidnb-installed
# torch's OpenMP threads spin while waiting by default, which slows everything several-fold
# when another process wants a core; sleeping at once (PASSIVE) costs 1/4 of the training speed
# on an idle machine. A short spin is within a few % of the best in both cases (measured in
# benchmarks/README.md, "Threads"); a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
ifeq ($(origin OMP_WAIT_POLICY),undefined)
export GOMP_SPINCOUNT ?= 10000
endif

# nbval's kernels and papermill's inherit the portable mode's environment from this prefix
PORTABLE := $(PY) -m reidnb numerics portable --
NBVAL := $(PORTABLE) $(PY) -m pytest -q -p no:cacheprovider --nbval notebooks \
	--nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: book book-full test unit nbval notebooks bench env clean portability-matrix

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[book,test]'
	$(PY) -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)"
	@touch $@

book: $(STAMP)
	$(PY) -m reidnb book --profile synthetic

book-full: $(STAMP)
	$(PY) -m reidnb book --profile synthetic --scope full

unit: $(STAMP)
	$(PY) -m pytest -q tests

nbval: $(STAMP)
	$(NBVAL)

test: $(STAMP)
	$(PY) -m pytest -q tests
	$(NBVAL)
	$(PORTABLE) $(PY) tools/check_core_scope.py

# Re-execute the chapters in the smoke profile into the committed notebooks/NN_topic.ipynb
# (in the portable numeric mode, as nbval checks them).
notebooks: $(STAMP)
	$(PORTABLE) $(PY) -c "from reidnb.book.mainjob import refresh_committed; refresh_committed()"

# nbval under simulated other machines (instruction-set caps, thread counts, one core); see README
portability-matrix: $(STAMP)
	$(PY) tools/portability_matrix.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf build runs
