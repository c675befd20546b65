PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint bench cluster clean

# Each step of a first run says what it does (`==>`), and pip shows its own progress: the
# first install compiles llama-cpp-python, minutes in which a silent terminal looks hung.
# Without a terminal (CI) pip prints no bars, only a "still running" line a minute.
$(BIN)/python:
	@echo "==> creating $(VENV), a virtual environment with $(PY)"
	@$(PY) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "==> installing Dispatch and its dependencies into $(VENV)"
	@echo "    (the first time, llama-cpp-python is compiled from source: about 5 minutes)"
	@$(BIN)/pip install -e '.[test]'
	@touch $@

install: $(VENV)/.installed

run: install
	@mkdir -p var
	@echo "==> migrating the database"
	@$(BIN)/python manage.py migrate --noinput
	@echo "==> first-run account"
	@$(BIN)/python manage.py dispatch_firstrun
	@echo "==> serving on http://$(HOST):$(PORT) (Ctrl-C stops the server)"
	@$(BIN)/python -m dispatch_site.serve -b $(HOST) -p $(PORT) dispatch_site.asgi:application

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chat/runtime chat/providers

test: install lint
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench

cluster: install
	bash bench/cluster.sh

clean:
	rm -rf $(VENV) var
