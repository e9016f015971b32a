# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv on first use.
# torch is pinned to 2.13.0: on a machine with the local CPU wheel that is what pip takes; an
# unpinned torch would pull several GB of CUDA packages.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: venv test demo clean-demo help

help:
	@echo "make demo   # generate synthroad, train a small teacher, evaluate it, print the metrics"
	@echo "make test   # run the test suite"

$(STAMP): setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[compress,test]"
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest test -q -ra

demo: $(STAMP)
	$(VENV)/bin/mtc demo

clean-demo:
	rm -rf runs/demo
