# rftwin: `make test` and `make demo` bootstrap everything on a fresh Debian 12 machine, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip
VPY := $(VENV)/bin/python
# Debian packages the project needs at run time (docs/architecture.md, "platform facts").
# libllvm19: Dr.Jit's LLVM backend (Sionna RT on CPU); older LLVMs crash in the path solver.
# libiio0: the libiio 0.24 that pylibiio==0.25 (pyadi-iio, the Pluto backend) binds to.
# python3-soapysdr: the SoapySDR binding (none on PyPI); linked into the venv by `soapy-link`.
# soapysdr-module-audio: a SoapySDR device without radio hardware (an audio source), for the tests.
# pulseaudio, pulseaudio-utils: the null sink the tests' audio device records, and pacat/parec/pactl.
# chromium, fonts-liberation: the headless browser the dashboard test drives with Playwright (no browser
#   download), and the fonts it renders with (only a Recommends of chromium, skipped by --no-install-recommends).
APT_PACKAGES := openssl libllvm19 libiio0 python3-soapysdr soapysdr-module-audio pulseaudio pulseaudio-utils chromium fonts-liberation
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Torch must come from the local CPU wheel, before anything that depends on it.
TORCH := torch==2.13.0
EXTRAS := central,train,pluto,dev

# Debian's python3-soapysdr is built for CPython 3.11, the venv's version: its two files are linked in.
SOAPY_DIST := /usr/lib/python3/dist-packages
VENV_SITE := $(VENV)/lib/python3.11/site-packages

export DRJIT_LIBLLVM_PATH ?= /usr/lib/x86_64-linux-gnu/libLLVM.so.19.1

.PHONY: help apt soapy-link install test demo bench results lint clean

help:
	@echo "make demo    run the main job (builds the default twin; see README)"
	@echo "make test    install everything and run the test suite"
	@echo "make bench   run the benchmarks under bench/ (figures as JSON on the last line)"
	@echo "make results regenerate docs/results/ at this commit"

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "rftwin needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.torch-stamp: | $(VENV)/bin/python
	$(PIP) install -q $(TORCH)
	@touch $@

$(VENV)/.install-stamp: pyproject.toml Makefile $(VENV)/.torch-stamp
	$(PIP) install -q -e '.[$(EXTRAS)]'
	@touch $@

# Idempotent: a link already pointing at the right file is left alone.
soapy-link: apt | $(VENV)/bin/python
	@for f in $(SOAPY_DIST)/SoapySDR.py $(SOAPY_DIST)/_SoapySDR.cpython-311-*.so; do \
	  [ -e "$$f" ] || { echo "soapy-link: $$f missing (python3-soapysdr)"; exit 1; }; \
	  link="$(VENV_SITE)/$${f##*/}"; \
	  [ "$$(readlink "$$link")" = "$$f" ] || { echo "soapy-link: $$link -> $$f"; ln -sfn "$$f" "$$link"; }; \
	done

install: apt $(VENV)/.install-stamp soapy-link

test: install
	$(VPY) -m pytest -q

demo: install
	$(VPY) -m sim.demo

bench: install
	@for b in bench/*.py; do [ "$$b" = bench/run_info.py ] && continue; echo "== $$b"; $(VPY) $$b || exit 1; done

# Every file under docs/results/, regenerated at the checked-out commit (each names its command and commit).
# Traces the full halls it needs (cold: tens of minutes on 2 cores); the RF surrogates go to out/surrogate.
results: install
	$(VPY) bench/detection.py --n 5000 --seed 0 --build
	for s in factory-hall-a factory-hall-b; do $(VENV)/bin/rftwin-surrogate train --site $$s --kind rf --out out/surrogate/rf-$$s || exit 1; done
	$(VPY) bench/detection.py --n 5000 --seed 0 --surrogate out/surrogate --only-surrogate
	$(VPY) bench/calibration.py --points 40 --seed 0
	$(VPY) bench/realism.py --positions 400 --seed 0 --calibrate --select
	$(VPY) bench/los.py
	$(VPY) bench/diffuse.py --out docs/results
	$(VPY) bench/band_edges.py --out docs/results
	$(VPY) bench/operating_point.py --out docs/results
	$(VPY) bench/sweep.py --out docs/results
	$(VPY) bench/replay.py --jobs 2 --out docs/results
	$(VPY) bench/spectral.py --n 3000 --n-train 3000 --episodes 30 --replay-hours 24 --trials 10 --out docs/results
	$(VPY) bench/demo_runs.py --runs 3 --out docs/results

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
