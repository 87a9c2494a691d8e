# Two entry points, each installing what it needs into .venv from a bare Python >= 3.11:
#   make demo   train a MANN on Omniglot on the CPU for a few minutes, evaluate it on held-out
#               classes, print the per-instance accuracy table, write a plot
#   make test   the test suite (real Omniglot files, real training steps)
#
# Omniglot is looked for at $(DATA_ROOT): $FEWSHOT_MANN_DATA, else ../shared/data/omniglot when
# it exists, else data/ (downloaded there with torchvision on first use).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DATA_ROOT ?= $(or $(FEWSHOT_MANN_DATA),$(if $(wildcard ../shared/data/omniglot/omniglot-py),../shared/data/omniglot,data))
DEMO_STEPS ?= 3000
DEMO_OUT ?= runs/demo

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	@# learn2learn 0.2.0 ships C files too old for Python 3.11 (upstream issue #413): rebuild them
	$(BIN)/pip install --quiet learn2learn==0.2.0 --config-settings="--build-option=build_ext"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(BIN)/fewshot-mann train --data-root $(DATA_ROOT) --download --steps $(DEMO_STEPS) \
		--batch-size 16 --lr 3e-3 --lr-min 3e-4 --eval-every 500 --out $(DEMO_OUT)
	$(BIN)/fewshot-mann evaluate --checkpoint $(DEMO_OUT)/checkpoint.pt --data-root $(DATA_ROOT) \
		--episodes 1000 --out $(DEMO_OUT)/eval
	@echo "plot: $(DEMO_OUT)/eval/instance_accuracy.png"

test: $(STAMP)
	FEWSHOT_MANN_DATA=$(DATA_ROOT) $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check fewshot_mann experiments scripts tests

# the documentation: mkdocs (the docs extra) into .venv, then docs/ built strictly into site/
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

.PHONY: docs
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site
