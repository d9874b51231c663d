# One entry point for the commands people type. Every target runs the idempotent
# set-up first, so a fresh Debian/Ubuntu clone needs nothing else.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PIO   := $(BIN)/pio
MNIST_DIR ?= $(firstword $(wildcard ../shared/mnist) data)
export MNIST_DIR
QEMU_ENVS   := qemu_an386_deepc qemu_f405_f32 qemu_f405_int8
BOARD_ENVS  := nucleo_f446re_f32 nucleo_f446re_int8
BACKEND ?= deepc
PYTEST_ARGS ?=

.PHONY: all setup train generate build evaluate benchmark test test-fast clean help

help:
	@echo "make all        set up, train, compile (deepC + native), build, run all 10,000 test images under QEMU"
	@echo "make test       set up and run every test (unit, QEMU end-to-end, slow ones included)"
	@echo "make test-fast  unit tests and quick QEMU runs only"
	@echo "make train | generate | build | evaluate [BACKEND=deepc|native] | benchmark"

setup:
	@bash tools/setup.sh

train: setup
	$(BIN)/mnist-mcu train --model mlp

# Generated model libraries (firmware/generated/), reproducible by this target.
generate: setup
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend deepc
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend native --dtype f32
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend native --dtype int8

build: setup
	$(PIO) run $(addprefix -e ,$(QEMU_ENVS) $(BOARD_ENVS))

# The main job: data -> model -> C -> firmware -> QEMU, all 10,000 test images.
all: train generate build
ifeq ($(BACKEND),native)
	$(BIN)/mnist-mcu evaluate --env qemu_f405_f32 --target qemu
	$(BIN)/mnist-mcu evaluate --env qemu_f405_int8 --target qemu
else
	$(BIN)/mnist-mcu benchmark
endif

evaluate: setup
ifeq ($(BACKEND),native)
	$(BIN)/mnist-mcu evaluate --env qemu_f405_int8 --target qemu
else
	$(BIN)/mnist-mcu evaluate --env qemu_an386_deepc --target qemu
endif

benchmark: setup
	$(BIN)/mnist-mcu benchmark

test: setup
	$(BIN)/python -m pytest -v $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -v -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf .pio build reports
