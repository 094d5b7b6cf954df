# Every target creates .venv when it is missing, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-django-esi lint messages bench demo clean dist

# $(call install,EXTRAS): the venv if missing, then the package with those extras.
define install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(1)]'
	touch $@
endef

$(STAMP): pyproject.toml
	$(call install,dev)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A site with django-esi 10 installed next to esi_views (tests/django_esi, and the tests
# that recognise django-esi's exceptions), in a venv of its own; skipped in .venv.
DJESI_VENV := .venv-django-esi
DJESI_STAMP := $(DJESI_VENV)/.installed

$(DJESI_STAMP): pyproject.toml
	test -x $(DJESI_VENV)/bin/python || $(PYTHON) -m venv $(DJESI_VENV)
	$(DJESI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DJESI_VENV)/bin/python -m pip install --quiet 'django-esi==10.*' -e '.[dev]'
	touch $@

test-django-esi: $(DJESI_STAMP)
	$(DJESI_VENV)/bin/python -m pytest --ds=tests.django_esi.settings -p no:cacheprovider \
		tests/django_esi tests/test_retry_task.py tests/test_errors.py $(PYTEST_ARGS)

# The sample site on http://127.0.0.1:8000 with a fake EVE SSO (the real one when
# ESI_SSO_CLIENT_ID, ESI_SSO_CLIENT_SECRET and ESI_SSO_CALLBACK_URL are set); Ctrl-C stops.
# DEMO_ARGS passes options to sample_site/run_demo.py (e.g. --port 8001).
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml
	$(call install,demo)

demo: $(DEMO_STAMP)
	$(BIN)/python sample_site/run_demo.py $(DEMO_ARGS)

# Benchmarks against django-esi 10 (from PyPI) in their own venv, same services, same
# run; each writes its markdown to bench/results/. Needs PostgreSQL and Redis.
BENCH_VENV := .venv-bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/13
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet 'django-esi==10.*' limits \
		'psycopg[binary]>=3.2' dj-database-url -e '.[celery,drf]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(BENCH_VENV)/bin/python bench/ratelimit.py --output bench/results/ratelimit.md
	$(BENCH_VENV)/bin/python bench/refresh.py
	$(BENCH_VENV)/bin/python bench/views.py
	$(BENCH_VENV)/bin/python bench/cleanup.py
	$(BENCH_VENV)/bin/python bench/drf.py --output bench/results/drf.md
	BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(BENCH_VENV)/bin/python bench/esi_limits.py --output bench/results/esi.md

# Translations: refresh the catalogues of both packages from the code and templates
# (then translate the new entries), and compile them. tests/test_translations.py fails
# while a marked string is missing, untranslated or not compiled. Needs GNU gettext.
MESSAGE_LANGUAGES := de fr

messages: $(STAMP)
	for package in esi_views esi_drf; do \
		(cd $$package && DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=$(CURDIR) \
			$(CURDIR)/$(BIN)/python -P -m django makemessages --no-obsolete \
			$(addprefix -l ,$(MESSAGE_LANGUAGES)) && \
		 DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=$(CURDIR) \
			$(CURDIR)/$(BIN)/python -P -m django compilemessages) || exit 1; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The sdist and the wheel in dist/, checked by twine (metadata, README rendering).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) $(DJESI_VENV) .pytest_cache build dist *.egg-info
