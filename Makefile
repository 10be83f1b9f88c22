# Two commands do everything on a fresh Debian-like machine (root, Python 3.11):
#   make demo   set up, then run the example assistant offline on a recorded utterance
#   make test   set up, then run the whole test suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := portaudio19-dev espeak-ng sox
PLUGINS := plugins/moonshine plugins/pocketsphinx plugins/silero plugins/dashscope

.PHONY: demo test setup apt venv lint bench clean

demo: setup
	$(BIN)/voicekit run robot --input "$$($(BIN)/python -m voicekit.testing.data goforward)" --output reply.wav

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

setup: $(VENV)/.installed

apt:
	@if ! command -v espeak-ng >/dev/null || ! [ -e /usr/include/portaudio.h ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: apt pyproject.toml $(wildcard plugins/*/pyproject.toml) examples/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,audio,aec]' $(foreach p,$(PLUGINS),$(if $(wildcard $(p)/pyproject.toml),-e '$(p)[test]')) -e examples
	touch $@

lint: setup
	$(BIN)/ruff check voicekit plugins examples tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) reply.wav
