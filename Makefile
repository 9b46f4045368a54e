# `make demo` and `make test` do all set-up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# On this project's CPU machines this pin takes the CPU wheel of torch 2.13.0 (a plain `torch`, or a newer pin,
# pulls a multi-GB CUDA build); elsewhere it may take a CUDA build: `make TORCH=...` picks another requirement.
# The package itself accepts torch >= 2.4.
TORCH   ?= torch==2.13.0

.PHONY: demo test venv clean readme

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,ray,export,peers]"
	touch $(STAMP)

venv: $(STAMP)

# Each `make demo` trains afresh: the previous demo's runs (runs/demo) are removed first.
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/earlykd compare --config configs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

# After adding or changing a distillation method: regenerate the README's methods table.
readme: $(STAMP)
	$(BIN)/python -c "from earlykd.cli_text import write_methods_table; write_methods_table()"

clean:
	rm -rf $(VENV) runs .pytest_cache
