# flask-customer-portal — the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
export PORT

.PHONY: demo test check lint typecheck security audit pytest docs bench translations extract-messages missing-translations system-deps clean \
	dist deps-bounds python-versions tour

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

translations: $(VENV)/.installed
	$(BIN)/pybabel compile -d flask_customer_portal/translations -D customer_portal

# The strings each catalogue lacks, as <lang>.po files to fill in (see docs/i18n.rst).
missing-translations: $(VENV)/.installed
	-$(BIN)/python scripts/missing_translations.py --output-dir build/missing-translations

extract-messages: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k ngettext:1,2 --no-location --no-wrap --sort-output \
		--project flask-customer-portal -o flask_customer_portal/translations/customer_portal.pot .
	$(BIN)/pybabel update -i flask_customer_portal/translations/customer_portal.pot \
		-d flask_customer_portal/translations -D customer_portal --no-fuzzy-matching --ignore-obsolete --no-wrap

system-deps:
	@bash scripts/system-deps.sh

# The demo installs what it runs, not the dev tools: the package with its
# `example` extra (PDFs and the example shop's Flask-Login; `make test` adds
# the rest to the same virtualenv). BACKEND=stripe or BACKEND=dodo serves the
# shop over that provider's API, with a stand-in server on 127.0.0.1
# (scripts/demo_backend.py), and installs the `demo-stripe` or `demo-dodo`
# extra instead.
BACKEND ?= local
ifeq ($(filter $(BACKEND),local stripe dodo),)
$(error BACKEND must be local, stripe or dodo, not "$(BACKEND)")
endif
DEMO_EXTRA := $(if $(filter local,$(BACKEND)),example,demo-$(BACKEND))
DEMO_STAMP := $(VENV)/.demo-installed$(if $(filter local,$(BACKEND)),,-$(BACKEND))

$(DEMO_STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[$(DEMO_EXTRA)]'
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/pybabel -q compile -d flask_customer_portal/translations -D customer_portal
ifeq ($(BACKEND),local)
	$(BIN)/flask --app example_app demo-data
	@echo
	@echo "Demo shop:      http://127.0.0.1:$(PORT)/"
	@echo "Static link:    http://127.0.0.1:$(PORT)/portal/login/biz_demo   (try ava@example.com; the email is printed below)"
	@echo "Staff area:     http://127.0.0.1:$(PORT)/admin/   (staff@example.com, password acme-demo-staff)"
	@echo "Magic link for Ava (one use, 24 h):"
	@$(BIN)/flask --app example_app portal create-session cus_demo_ava 2>/dev/null
	@echo
	$(BIN)/flask --app example_app run --host 127.0.0.1 --port $(PORT)
else
	$(BIN)/python scripts/demo_backend.py $(BACKEND) --port $(PORT)
endif

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

security: $(VENV)/.installed
	$(BIN)/bandit -q -r flask_customer_portal -c pyproject.toml

# Known vulnerabilities in the installed packages (needs PyPI's JSON API);
# pip-audit lives in its own virtualenv so that it does not audit itself.
audit: $(VENV)/.installed
	@test -x .venv-audit/bin/pip-audit || ($(PYTHON) -m venv .venv-audit && .venv-audit/bin/pip install --quiet 'pip-audit>=2.7')
	$(BIN)/pip freeze --exclude-editable > .venv-audit/requirements.txt
	.venv-audit/bin/python scripts/audit.py .venv-audit/requirements.txt

# pytest-xdist: one worker per core (`make test PYTEST_WORKERS=0` runs in one
# process). Each worker starts its own PostgreSQL, and runs whole test files
# (--dist loadfile): a module's fixtures are made once, and the packaging
# tests, which build in the checkout, never build twice at once. Bytecode is
# written even under PYTHONDONTWRITEBYTECODE: without it every run, in every
# worker, rewrites the assertions of all test modules again (seconds each).
PYTEST_WORKERS ?= auto
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

pytest: $(VENV)/.installed translations system-deps
	$(PYTEST) $(PYTEST_ARGS)

test: lint typecheck security pytest

# Before each commit: lint, types and every test but the slow suites
# (property, load, browser), in about a minute and a half.
check: lint typecheck translations system-deps
	$(PYTEST) -m "not slow and not browser" $(PYTEST_ARGS)

# The sdist and the wheel, as they would be published (catalogues compiled by setup.py).
dist: $(VENV)/.installed
	rm -rf dist
	$(BIN)/python -m build --quiet --outdir dist .

# The wheel in clean virtualenvs with the lowest and the newest versions of
# every dependency it allows (on the oldest and the newest Python claimed),
# each running the smoke suite (tests/test_smoke.py) and the payment
# adapters' tests. See scripts/check_dist.py.
deps-bounds: dist system-deps
	$(BIN)/python scripts/check_dist.py dist/*.whl lowest newest

# The wheel's smoke suite on the other Python versions the package claims.
python-versions: dist
	$(BIN)/python scripts/check_dist.py dist/*.whl python3.11 python3.12

# The screenshot tour of the docs (docs/tour.rst, docs/_static/tour/): every
# page of the demo at 375 and 1280 px, made again from this checkout.
tour: $(VENV)/.installed translations system-deps
	$(BIN)/python scripts/tour.py

docs: $(VENV)/.installed
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(VENV)/.installed translations
	@$(BIN)/python -c "from importlib.metadata import version as v; v('flask-security-too'), v('cryptography'), v('weasyprint'), v('gunicorn')" 2>/dev/null \
		|| $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-audit docs/_build .mypy_cache .pytest_cache .ruff_cache dist build
