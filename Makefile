# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run run-cluster test test-fast lint typecheck bench bench-age bench-upload bench-transfer bench-audit bench-storage bench-web bench-cluster demo deps clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,test,bench]'
	touch $(STAMP)

# System tools the tests use for real: the `age` program (Debian package `age`), the
# SoftHSM2 token the pkcs11 custody tests initialise (Debian package `softhsm2`), and the
# PostgreSQL server programs the tests start throwaway clusters with (Debian package
# `postgresql`; tests/pg.py finds them under /usr/lib/postgresql/<version>/bin), nginx,
# which the edge tests and `make run-cluster` put in front of the gateway (Debian package
# `nginx`; config/nginx.conf), and the headless Chromium and its driver the dashboard's
# browser tests drive (Debian packages `chromium` and `chromium-driver`).
deps:
	@command -v age >/dev/null 2>&1 || { \
	  echo "installing the age program (Debian package age)"; \
	  (apt-get update -qq && apt-get install -y -qq age) >/dev/null || \
	  { echo "make: could not install the age program; install the Debian package 'age'" >&2; exit 1; }; }
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  echo "installing SoftHSM2 (Debian package softhsm2)"; \
	  (apt-get update -qq && apt-get install -y -qq softhsm2) >/dev/null || \
	  { echo "make: could not install SoftHSM2; install the Debian package 'softhsm2'" >&2; exit 1; }; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing the PostgreSQL server (Debian package postgresql)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null || \
	  { echo "make: could not install PostgreSQL; install the Debian package 'postgresql'" >&2; exit 1; }; }
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  echo "installing nginx (Debian package nginx)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null || \
	  { echo "make: could not install nginx; install the Debian package 'nginx'" >&2; exit 1; }; }
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  echo "installing Chromium and its driver (Debian packages chromium, chromium-driver)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null || \
	  { echo "make: could not install Chromium; install the Debian packages 'chromium' and 'chromium-driver'" >&2; exit 1; }; }

## Run the gateway on the embedded defaults (SQLite, local object store, keys/) on 127.0.0.1:8080.
## config/gateway.toml's relative paths are relative to config/: the data is in var/ and keys/.
run: $(STAMP)
	$(BIN)/gateway --config config/gateway.toml init
	$(BIN)/gateway --config config/gateway.toml dev-seed
	$(BIN)/gateway --config config/gateway.toml serve --host 127.0.0.1 --port 8080

## The production topology locally: PostgreSQL, moto (S3, KMS), three instances, nginx (TLS).
run-cluster: $(STAMP) deps
	$(BIN)/python scripts/run_cluster.py

## Run the whole test suite, slow end-to-end tests included.
test: $(STAMP) deps
	$(BIN)/python -m pytest -n 2 -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench scripts
	$(BIN)/ruff format --check gateway tests bench scripts
	$(BIN)/codespell gateway tests bench config README.md CHANGELOG.md

typecheck: $(STAMP)
	$(BIN)/mypy

## Benchmarks (their numbers are in the README). Each takes minutes; run one with `make bench-age` etc.
bench: bench-age bench-upload bench-transfer bench-audit bench-storage bench-web bench-cluster

bench-age: $(STAMP) deps
	$(BIN)/python bench/bench_age.py --size 1G --runs 3

bench-upload: $(STAMP) deps
	$(BIN)/python bench/bench_upload.py --sizes-mib 512,2048 --backends local,s3

bench-transfer: $(STAMP) deps
	$(BIN)/python bench/bench_transfer.py --size-mib 2048

.PHONY: bench-tree
bench-tree: $(STAMP) deps
	$(BIN)/python bench/bench_tree.py --size-mib 2048 --runs 3

.PHONY: bench-dir
bench-dir: $(STAMP) deps
	$(BIN)/python bench/bench_dir.py --size-mib 2048

bench-audit: $(STAMP)
	$(BIN)/python bench/bench_audit.py --entries 1000000

bench-storage: $(STAMP)
	$(BIN)/python bench/bench_storage.py

bench-web: $(STAMP)
	$(BIN)/python bench/bench_web.py --entries 1000000

bench-cluster: $(STAMP) deps
	$(BIN)/python bench/bench_cluster.py --seconds 5

demo: $(STAMP) deps
	$(BIN)/python -m tests.demo

clean:
	rm -rf $(VENV) var build *.egg-info
