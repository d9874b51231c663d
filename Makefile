# One entry point for the commands people type. Every target runs the idempotent
# set-up first, so a fresh Debian/Ubuntu clone needs nothing else.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PIO   := $(BIN)/pio
MNIST_DIR ?= $(firstword $(wildcard $(abspath ../shared/mnist)) $(abspath data))
export MNIST_DIR
ENVS    := qemu_an386_deepc qemu_f405_deepc qemu_f405_f32 qemu_f405_int8 qemu_f405_cnn_int8 qemu_f405_ref_f32 \
           nucleo_f446re_f32 nucleo_f446re_int8 nucleo_f446re_cnn_int8 nucleo_f446re_deepc
# all: every backend; deepc or native: just that one (make all BACKEND=native)
BACKEND ?= all
PYTEST_ARGS ?=
comma := ,

# The main job keeps what it makes in build/ (ignored): the trained model, the generated
# libraries (the firmware is built from them through MNIST_MCU_OUT and
# firmware/scripts/model_dir.py) and the firmware in .pio/; reports go to reports/ (ignored).
# So `make all` leaves `git status` clean. `make model` refreshes the committed model/ and
# firmware/generated/ instead.
OUT  := $(abspath build)
MAIN := MNIST_MCU_OUT=$(OUT)
# this run's trained MLP, or the committed one when `make generate` runs on its own
MLP   = $$(f=$(OUT)/model/mlp.onnx; [ -f $$f ] && echo $$f || echo model/mlp.onnx)
NATIVE_ENVS := qemu_f405_f32 qemu_f405_int8 qemu_f405_cnn_int8

.PHONY: all setup train generate generate-deepc generate-native build benchmark model draw screenshot test test-fast clean help

help:
	@echo "make all        set up, train, compile (deepC + native), build, run all 10,000 test images under QEMU"
	@echo "make all BACKEND=deepc|native   the same for one backend"
	@echo "make test       set up and run every test (unit, host-compiled C, QEMU end-to-end, slow ones too)"
	@echo "make test-fast  everything but the slow tests"
	@echo "make train | generate | build | benchmark | draw | screenshot   (outputs in build/, reports/)"
	@echo "make model     retrain and regenerate the committed model/ and firmware/generated/"

setup:
	@bash tools/setup.sh

train: setup
	$(BIN)/mnist-mcu train --model mlp --out-dir $(OUT)/model

# Generated model libraries of this run, in build/generated/<lib>.
generate: generate-deepc generate-native

generate-deepc: setup
	$(MAIN) $(BIN)/mnist-mcu compile $(MLP) --backend deepc --out $(OUT)/generated/deepc

generate-native: setup
	$(MAIN) $(BIN)/mnist-mcu compile $(MLP) --backend native --dtype f32 --out $(OUT)/generated/native_f32
	$(MAIN) $(BIN)/mnist-mcu compile $(MLP) --backend native --dtype int8 --out $(OUT)/generated/native_int8
	$(MAIN) $(BIN)/mnist-mcu compile model/cnn.onnx --backend native --dtype int8 --out $(OUT)/generated/native_cnn_int8

build: setup
	$(MAIN) $(PIO) run $(addprefix -e ,$(ENVS))

# The main job: data -> model -> C -> firmware -> QEMU, all 10,000 test images.
ifeq ($(BACKEND),all)
all: train generate build
	$(MAIN) $(BIN)/mnist-mcu benchmark
	$(MAIN) $(BIN)/mnist-mcu report
else ifeq ($(BACKEND),native)
all: train generate-native
	$(MAIN) $(PIO) run $(addprefix -e ,$(NATIVE_ENVS))
	$(MAIN) $(BIN)/mnist-mcu benchmark --no-build --envs $(subst $(eval) ,$(comma),$(NATIVE_ENVS))
else
all: train generate-deepc
	$(MAIN) $(PIO) run -e qemu_an386_deepc
	$(MAIN) $(BIN)/mnist-mcu benchmark --no-build --envs qemu_an386_deepc
endif

benchmark: setup
	$(MAIN) $(BIN)/mnist-mcu benchmark
	$(MAIN) $(BIN)/mnist-mcu report

# Refresh the committed artifacts: model/mlp.onnx (+ JSON, curve) and firmware/generated/.
model: setup
	$(BIN)/mnist-mcu train --model mlp
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend deepc
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend native --dtype f32
	$(BIN)/mnist-mcu compile model/mlp.onnx --backend native --dtype int8
	$(BIN)/mnist-mcu compile model/cnn.onnx --backend native --dtype int8 --out firmware/generated/native_cnn_int8

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
