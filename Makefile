# The two README commands. Each bootstraps its own virtual environment from nothing.
#   make demo   the whole experiment on the embedded synthetic cohort (outputs/demo/)
#   make test   the offline test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A local CPU build of torch 2.13.0 is preferred where it exists (it avoids a multi-GB CUDA
# download on CPU machines); anywhere else pyproject's range torch>=2.3 applies.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)" || $(PY) -m pip install -q "torch>=2.3"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

demo: $(VENV)/.installed
	$(PY) run_experiment.py configs/demo.yaml

clean:
	rm -rf $(VENV) outputs
