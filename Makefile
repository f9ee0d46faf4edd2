# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-fast install lint clean

# The default torch wheel from PyPI is the CUDA build (about 5.9 GB of .venv). For a CPU-only machine:
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (pip then takes torch/torchvision from that index: the same pinned versions, +cpu builds).
TORCH_INDEX ?=
PIP_TORCH := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

# Reinstall only when pyproject.toml changed (the stamp is older than it).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . $(PIP_TORCH)
	touch $(STAMP)

# The tests also exercise the optional trackers (the extras wandb, tensorboard, mlflow).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[wandb,tensorboard,mlflow]' $(PIP_TORCH)
	touch $(TEST_STAMP)

install: $(STAMP)

# One status line (jobs done of total, the running jobs' epochs), then the reproduction headline and where
# summary.md, the scorecard and report.html are. Snakemake's full output: .snakemake/log/, or run
# `snakemake --cores all` yourself.
run: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python workflow/scripts/follow.py --report report.html -- $(BIN)/snakemake --cores all

test: $(TEST_STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

# The unit layer while you work (about 2.5 minutes on 2 cores): everything but the tests marked slow (end-to-end
# workflows, subprocesses that train, torchrun) and the local SLURM cluster. `make test` runs them all.
test-fast: $(TEST_STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m "not slow and not slurm"

lint: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint

clean:
	rm -rf $(VENV) .snakemake
