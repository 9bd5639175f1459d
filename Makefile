# The two Quick-start commands. Each runs the idempotent installer first, so
# on a fresh machine they are the whole set-up.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test test-fast benchmark

install:
	bash tools/install.sh

demo: install
	$(PY) tools/demo.py $(DEMO_ARGS)

# Every test, the slow end-to-end ones included.
test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Only the fast unit tests, while developing.
test-fast: install
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

benchmark: install
	$(PY) benchmarks/bench_dgconv.py --update-readme
	$(PY) benchmarks/bench_coc.py --update-readme
	$(PY) benchmarks/bench_pedconv.py --update-readme
	$(PY) benchmarks/bench_p4.py --update-readme
