# Two commands do everything on a fresh Debian-like machine (root, Python 3.11):
#   make demo   set up, then run the example assistant offline on a recorded utterance
#   make test   set up, then run the whole test suite
#   make test-fast   the tests not marked slow, serially: a quick check while working (docs/testing.md)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: what the assistants need, and what only the tests need (a browser, a sound server)
APT_RUNTIME := portaudio19-dev espeak-ng
APT_TEST := sox chromium pulseaudio libasound2-plugins haproxy
# order matters: the DashScope emulator depends on the DashScope plugin
PLUGINS := plugins/moonshine plugins/pocketsphinx plugins/silero plugins/dashscope plugins/dashscope-emulator

.PHONY: demo test test-fast setup apt apt-test lint bench clean

demo: setup
	$(BIN)/voicekit run robot --input "$$($(BIN)/python -m voicekit.testing.data goforward)" --output reply.wav

test: apt-test setup
	$(BIN)/python -m voicekit.testing.data >/dev/null  # real speech for the tests, fetched once
	# two workers for the code's tests (conftest.py keeps each file on one worker); the executable
	# docs run after, in one process, because a page's blocks share state in order
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --ignore=tests/docs
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/docs

# the fast subset while working: every folder's tests not marked slow, in one process (CI runs
# everything with make test); the docs' pages of plain Python blocks after, as in make test
test-fast: setup
	$(BIN)/python -m voicekit.testing.data >/dev/null
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 0 -m "not slow" --ignore=tests/docs
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 0 -m "not slow" tests/docs

setup: $(VENV)/.installed

# install whichever of the listed packages are missing (apt-get update only when needed)
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing Debian packages:" $$missing; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

apt:
	$(call apt_install,$(APT_RUNTIME))

apt-test:
	$(call apt_install,$(APT_TEST))

$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml) examples/pyproject.toml | apt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,audio,aec,ray]' $(foreach p,$(PLUGINS),$(if $(wildcard $(p)/pyproject.toml),-e '$(p)[test]')) -e examples
	touch $@

lint: setup
	$(BIN)/ruff check voicekit plugins examples tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) reply.wav
