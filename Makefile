# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv on first use.
# torch is pinned to 2.13.0: on a machine with the local CPU wheel that is what pip takes; an
# unpinned torch would pull several GB of CUDA packages.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
# The runtime half on the Python stack ROS 2 distributions ship (Jazzy: numpy 1.26, OpenCV 4.6;
# Humble: numpy 1.21, OpenCV 4.5): numpy 1.23.5 is the oldest with Python 3.11 wheels. No torch.
NP1      ?= .venv-numpy1
NP1_PINS ?= numpy==1.23.5 opencv-python-headless==4.6.0.66 onnxruntime==1.31.1 rosbags==0.11.9 mcap==1.6.0 \
            mcap-ros2-support==0.6.0 pyyaml pytest
# the torch-free half of the suite: a folder, not a list (test/compress needs torch)
NP1_TESTS = test/runtime test/ros

.PHONY: venv test test-main test-numpy1 lint demo clean-demo help

help:
	@echo "make demo   # the whole mission on synthroad: data, teacher, two pruned+distilled students (accuracy, deployable), bundles, rosbag, replay report"
	@echo "make test   # run the test suite (and the runtime tests again under numpy 1.x / OpenCV 4.6)"
	@echo "make lint   # ruff (lint + format check) on the whole tree, mypy on mtc_perception/ (pyproject.toml)"

$(STAMP): setup.py setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[compress,bench,test,lint]"
	@touch $(STAMP)

venv: $(STAMP)

$(NP1)/.installed:
	$(PYTHON) -m venv $(NP1)
	$(NP1)/bin/python -m pip install --quiet $(NP1_PINS)
	@touch $@

test: test-main test-numpy1

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-main: $(STAMP)
	$(PY) -m pytest test -q -ra

test-numpy1: $(NP1)/.installed
	@$(NP1)/bin/python -c "import numpy, cv2, onnxruntime, importlib.util as u; assert u.find_spec('torch') is None; \
	print('runtime tests on numpy', numpy.__version__, '/ OpenCV', cv2.__version__, '/ onnxruntime', onnxruntime.__version__, '/ no torch')"
	$(NP1)/bin/python -m pytest $(NP1_TESTS) -q -ra

demo: $(STAMP)
	$(VENV)/bin/mtc-compress demo

clean-demo:
	rm -rf runs/demo
