PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint bench cluster clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py dispatch_firstrun
	$(BIN)/python -m dispatch_site.serve -b $(HOST) -p $(PORT) dispatch_site.asgi:application

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
