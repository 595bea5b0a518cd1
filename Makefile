# `make demo`  : set up a virtual environment and run the main job.
# `make test`  : set up a virtual environment and run the test suite.
#
# TORCH picks how torch is installed when the environment has none:
#   TORCH=cpu   (default) the CPU build, torch==2.13.0, from the PyTorch CPU
#               index, so that no CUDA packages are pulled;
#   TORCH=keep  use the torch already importable (e.g. a CUDA build): the venv
#               is created with --system-site-packages and torch is not touched.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= cpu
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

ifeq ($(TORCH),keep)
VENV_FLAGS := --system-site-packages
endif

.PHONY: demo test bench clean

$(VENV)/.ready: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || \
	  $(PY) -m pip install -q --retries 1 "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_INDEX)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.ready
	$(VENV)/bin/graphsparse learn --out results/karate --overwrite

# pytest exits 5 when it collected no test: that is a failure here.
test: $(VENV)/.ready
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected: failing" >&2; exit 1; fi; exit $$rc

bench: $(VENV)/.ready
	$(PY) benchmarks/adjacency.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis results
