# Two user-facing targets: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test test-slow wheel-check docs bench clean

install: $(STAMP)

# torch/torchvision pinned to the releases on the build machines' disk (see README).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 ruff==0.17.6 mypy==2.4.1
	$(PIP) install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/bagmar demo

lint: install
	$(VENV)/bin/ruff check bagmar_cli tests benchmarks
	$(VENV)/bin/ruff format --check bagmar_cli tests benchmarks
	$(VENV)/bin/mypy bagmar_cli

# two test processes (pytest-xdist), one torch thread each (docs/development.md has the timings)
test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2

# the README's pip line in a fresh venv outside the checkout, then every subcommand from there (CI runs it)
wheel-check: install
	.ci/wheel-check

# docs/cli.md and docs/settings.md from the code (a test fails when they are not current)
docs: install
	$(PY) -m bagmar_cli.reference docs

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) build *.egg-info
