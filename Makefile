# One task runner. `make demo` and `make test` set up everything they need on a fresh machine
# (a virtual environment in .venv with Kanal and its test tools) and need nothing else installed.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.kanal-installed

.PHONY: demo test test-serial lint typecheck unit bench clean tools kafka docs docs-serve

# Debian tools some tests and the benchmarks run for real, as command:package: Prometheus (a test
# scrapes Kanal with it), wrk (load for the ingress benchmark), and Java and Maven, which fetch
# and run Apache Kafka (every Kafka test runs on it as well as on the embedded broker; the
# broker's jars come from Maven Central into ~/.cache/kanal once), and Go, which builds h2spec
# (the HTTP/2 conformance suite), helm (which renders the chart in its tests; it needs Go 1.26,
# as this machine's is, not Debian's) and Jaeger (the collector the tracing test sends spans to;
# about 13 minutes on two cores), each into ~/.cache/kanal once. Installed when missing.
TOOLS = prometheus:prometheus wrk:wrk java:openjdk-17-jre-headless mvn:maven go:golang-go
APT   = $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## The getting-started example on the embedded broker, with two event-display sinks.
demo: $(STAMP)
	$(BIN)/kanal dev --apply examples/getting-started \
	  --sink hello-display=9001 --sink goodbye-display=9002

tools:
	@missing=""; for t in $(TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## Lint, types and the whole test suite (what CI runs). The tests that need no broker run
## first; then the Kafka tests run on the embedded broker and on Apache Kafka side by side, two
## pytest processes that mostly wait on brokers and subprocesses (the embedded one's report is
## printed after the Apache one's). `make test-serial` runs everything in one process.
test: $(STAMP) tools lint typecheck
	$(BIN)/pytest -m "not soak and not kafka"
	@$(BIN)/pytest -m "kafka and not soak" --kafka-backends embedded >$(VENV)/embedded-tests.log 2>&1 & embedded=$$!; \
	$(BIN)/pytest -m "kafka and not soak" --kafka-backends apache; apache=$$?; \
	wait $$embedded; status=$$?; \
	echo "== the Kafka tests on the embedded broker"; cat $(VENV)/embedded-tests.log; \
	exit $$(( apache || status ))

test-serial: $(STAMP) tools lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

## Every benchmark with its same-run baseline (~35 min on 2 cores, not part of `make test`);
## writes bench/results/results.md and results.png, and adaptive.png (adaptive concurrency over
## time); prints what tracing costs (off, and on at 1%), what one failing key costs the other
## keys of an ordered Trigger, and the ingress with deduplication on against off.
## `make bench BENCH_FLAGS=--quick` for a short run.
BENCH_FLAGS ?=
bench: $(STAMP) tools
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py $(BENCH_FLAGS)
	$(BIN)/python bench/servers.py
	$(BIN)/python bench/filters_bench.py
	$(BIN)/python bench/instructions.py --tracing
	$(BIN)/python bench/instructions.py --deduplication
	$(BIN)/python bench/dispatch_instructions.py
	$(BIN)/python bench/dispatch_instructions.py --tracing
	$(BIN)/python bench/ingress_bench.py --tracing
	$(BIN)/python bench/adaptive.py
	$(BIN)/python bench/poison_key.py
	$(BIN)/python bench/dedup_bench.py --broker embedded
	$(BIN)/python bench/dedup_bench.py --broker apache

## Apache Kafka (KRaft, one node) on 127.0.0.1:9092 without Docker, until Ctrl-C; then, in another
## terminal: KANAL_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/kanal dev --apply examples/getting-started
kafka: $(STAMP) tools
	PYTHONPATH=tests $(BIN)/python -m support.apache_kafka $(KAFKA_FLAGS)

## The documentation site: the references regenerated from the code (docs/reference/), then the
## site built into build/docs with --strict (a broken link or anchor fails).
docs: $(STAMP)
	PYTHONPATH=tests $(BIN)/python -m support.docs_gen
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## The same site on http://127.0.0.1:8000, rebuilt on every change.
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
