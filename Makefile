# make test   the test suite (minutes)         make book   every notebook at the ci profile, then the HTML book
#   (JOBS=N runs N notebooks side by side, same numbers; on 2 cores one after another is faster)
# make test-slow   the slow tests: book build, torchrun, compile/ONNX exports, ci-profile accuracies
# All create .venv with the pinned dependencies when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PROFILE ?= ci
JOBS ?= 1
export WNA_DATA ?= data
export WNA_CACHE ?= $(CURDIR)/.cache/wna

STAMP := $(VENV)/.installed

.PHONY: test test-slow book notebooks html clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade --quiet pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -m slow

notebooks: $(STAMP)
	$(VENV)/bin/wna run --profile $(PROFILE) --no-progress --jobs $(JOBS)

html: $(STAMP)
	$(VENV)/bin/jupyter-book build --all -W -n --keep-going .

book: notebooks
	$(MAKE) html

clean:
	rm -rf _build book/executed
