# One entry point for the commands people type. Every target runs the idempotent
# set-up first, so a fresh Debian/Ubuntu clone needs nothing else.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PIO   := $(BIN)/pio
MNIST_DIR ?= $(firstword $(wildcard $(abspath ../shared/mnist)) $(abspath data))
export MNIST_DIR
ENVS    := qemu_an386_deepc qemu_f405_f32 qemu_f405_int8 qemu_f405_cnn_int8 nucleo_f446re_f32 nucleo_f446re_int8
# all: every backend; deepc or native: just that one (make all BACKEND=native)
BACKEND ?= all
PYTEST_ARGS ?=

.PHONY: all setup train generate build benchmark draw screenshot test test-fast clean help

help:
	@echo "make all        set up, train, compile (deepC + native), build, run all 10,000 test images under QEMU"
	@echo "make all BACKEND=deepc|native   the same for one backend"
	@echo "make test       set up and run every test (unit, host-compiled C, QEMU end-to-end, slow ones too)"
	@echo "make test-fast  everything but the slow tests"
	@echo "make train | generate | build | benchmark | draw | screenshot"

setup:
	@bash tools/setup.sh

train: setup
	$(BIN)/mnist-mcu train --model mlp

# Generated model libraries (firmware/generated/), reproducible by this target.
generate: setup
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend deepc
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend native --dtype f32
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend native --dtype int8
	$(BIN)/mnist-mcu compile model/cnn.onnx --backend native --dtype int8 --out firmware/generated/native_cnn_int8

build: setup
	$(PIO) run $(addprefix -e ,$(ENVS))

# The main job: data -> model -> C -> firmware -> QEMU, all 10,000 test images.
ifeq ($(BACKEND),all)
all: train generate build
	$(BIN)/mnist-mcu benchmark
else ifeq ($(BACKEND),native)
all: train
	$(BIN)/mnist-mcu run --backend native --dtype f32
	$(BIN)/mnist-mcu run --backend native --dtype int8
else
all: train
	$(BIN)/mnist-mcu run --backend $(BACKEND)
endif

benchmark: setup
	$(BIN)/mnist-mcu benchmark

draw: setup
	$(BIN)/mnist-mcu draw --env qemu_f405_cnn_int8

# README's picture of the draw page, taken with the browser test's headless chromium.
screenshot: setup
	$(BIN)/python -m mnist_mcu.web.screenshot --out docs/draw.png

test: setup
	$(BIN)/python -m pytest -v $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -v -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf .pio build reports
