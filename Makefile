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

# llama.cpp compiled for AVX2, not for this exact CPU (-march=native, its default): a native
# build uses every instruction the CPU advertises, and some virtual machines advertise AMX but
# trap on it ("Illegal instruction"). The wheel is kept per machine, outside pip's own cache
# (which would hand back a native build of the same version).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS ?= $(HOME)/.cache/dispatch/llama-avx2

$(VENV)/.llama: | $(BIN)/python
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "==> compiling llama-cpp-python (once per machine: about 5 minutes)"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps --no-cache-dir \
			--no-binary llama-cpp-python -w $(LLAMA_WHEELS) "llama-cpp-python>=0.3,<0.4"; \
	fi
	@$(BIN)/pip install --quiet --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	@touch $@

$(VENV)/.installed: pyproject.toml | $(VENV)/.llama
	@echo "==> installing Dispatch and its dependencies into $(VENV)"
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
	$(BIN)/mypy chat/runtime chat/providers chat/overrides

test: install lint
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench

cluster: install
	bash bench/cluster.sh

clean:
	rm -rf $(VENV) var
