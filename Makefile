# SwiftFlows — build, test and demo. `make help` lists the targets.
#
# Every target installs what it needs on a fresh Debian machine (apt-get for system packages,
# a virtual environment under .venv for Python packages).

SHELL        := /bin/bash
PREFIX       ?= /usr/local
BUILD        := build
LIBDIR       := $(BUILD)/lib
BINDIR       := $(BUILD)/bin
VERSION      := 0.1.0
SONAME       := libswiftflows.so.0
LIB          := $(LIBDIR)/libswiftflows.so
VENV         := .venv
PY           := $(VENV)/bin/python
CC           ?= cc
CFLAGS_C99   := -std=c99 -O2 -Wall -Wextra -Werror -Iinclude
LDFLAGS_LIB  := -L$(LIBDIR) -lswiftflows -Wl,-rpath,'$$ORIGIN/../lib'
APT_PACKAGES := libhdf5-dev libopenblas-dev pkg-config python3-venv
SWIFT_RELEASE_SCRATCH := .build-shared

.PHONY: all help deps lib cli c-programs venv test test-swift test-c test-python test-cli test-exports demo install clean

all: lib cli c-programs ## Build the library, the command-line tool and the C programs (release)

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

deps: ## Install the Debian packages the build needs (when missing)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lib: deps ## Build build/lib/libswiftflows.so (self-contained, exports only sf_*)
	SWIFTFLOWS_SHARED_RELEASE=1 swift build -c release --product swiftflows --scratch-path $(SWIFT_RELEASE_SCRATCH)
	@mkdir -p $(LIBDIR)
	@cp -f $(SWIFT_RELEASE_SCRATCH)/release/libswiftflows.so $(LIBDIR)/libswiftflows.so.$(VERSION)
	@strip --strip-unneeded $(LIBDIR)/libswiftflows.so.$(VERSION)
	@ln -sf libswiftflows.so.$(VERSION) $(LIBDIR)/$(SONAME)
	@ln -sf $(SONAME) $(LIBDIR)/libswiftflows.so
	@echo "built $(LIB)"

cli: deps ## Build build/bin/swiftflows, the command-line tool (release, Swift runtime linked statically)
	swift build -c release --static-swift-stdlib --product swiftflows-cli --scratch-path .build-cli
	@mkdir -p $(BINDIR)
	@cp -f .build-cli/release/swiftflows-cli $(BINDIR)/swiftflows
	@echo "built $(BINDIR)/swiftflows"

c-programs: lib $(BINDIR)/score_csv $(BINDIR)/train_toy $(BINDIR)/test_capi ## Build the C example and the C test program

$(BINDIR)/score_csv: examples/c/score_csv.c include/swiftflows.h $(LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(CFLAGS_C99) -o $@ $< $(LDFLAGS_LIB)

$(BINDIR)/train_toy: examples/c/train_toy.c include/swiftflows.h $(LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(CFLAGS_C99) -o $@ $< $(LDFLAGS_LIB)

$(BINDIR)/test_capi: tests/c/test_capi.c include/swiftflows.h $(LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(CFLAGS_C99) -pthread -o $@ $< $(LDFLAGS_LIB)

venv: $(VENV)/.ready ## Create .venv with numpy, h5py, pytest, matplotlib and the swiftflows package

$(VENV)/.ready: bindings/python/pyproject.toml | deps
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q numpy h5py pytest matplotlib
	$(PY) -m pip install -q -e bindings/python
	@touch $@

test: test-swift test-c test-python test-cli test-alloc test-fuzz-corpus test-exports ## Run every test suite (Swift, C, Python, command line, allocation check, fuzz corpus replay, exported symbols)

test-swift: deps venv ## Swift unit tests
	SWIFTFLOWS_PYTHON=$(CURDIR)/$(PY) swift test --parallel

test-c: c-programs ## The C API test program
	$(BINDIR)/test_capi

test-python: lib venv ## The Python package's pytest suite
	SWIFTFLOWS_LIBRARY=$(CURDIR)/$(LIB) $(PY) -m pytest -q bindings/python/tests

# The functions declared in the header (comments removed by the preprocessor) against every
# defined symbol of the library's dynamic symbol table, local entries included (see Package.swift
# on why Swift symbols used to show up there).
test-exports: lib ## The library's dynamic symbols are exactly the functions of include/swiftflows.h
	@declared=$$($(CC) -E -P include/swiftflows.h | grep -oE '\bsf_[a-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u); \
	defined=$$(nm -D --defined-only $(LIB) | awk '{print $$NF}' | sort -u); \
	functions=$$(nm -D --defined-only $(LIB) | awk '$$2 == "T" {print $$NF}' | sort -u); \
	extra=$$(comm -13 <(echo "$$declared") <(echo "$$defined")); \
	missing=$$(comm -23 <(echo "$$declared") <(echo "$$functions")); \
	[ -n "$$declared" ] || { echo "test-exports: no sf_ functions found in include/swiftflows.h"; exit 1; }; \
	[ -z "$$extra" ] || echo "$$extra" | sed 's/^/test-exports: exported but not a function of the header: /'; \
	[ -z "$$missing" ] || echo "$$missing" | sed 's/^/test-exports: declared in the header but not exported as a function: /'; \
	[ -z "$$extra$$missing" ] || exit 1; \
	echo "test-exports: $(LIB) exports exactly the $$(echo "$$declared" | wc -l) functions of include/swiftflows.h"

test-cli: cli venv ## End-to-end tests of the swiftflows command-line tool
	SWIFTFLOWS_CLI=$(CURDIR)/$(BINDIR)/swiftflows $(PY) -m pytest -q tests/cli

demo: lib venv ## The main job (see README)
	SWIFTFLOWS_LIBRARY=$(CURDIR)/$(LIB) $(PY) scripts/demo.py

install: lib cli ## Install library, header, pkg-config file and the swiftflows tool under PREFIX
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINDIR)/swiftflows $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(LIBDIR)/libswiftflows.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libswiftflows.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libswiftflows.so
	install -m 0644 include/swiftflows.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' swiftflows.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/swiftflows.pc

# ---- Loader fuzzing (issue: reliability; tests/fuzz) -------------------------------------------
FUZZ_DIR      := $(BUILD)/fuzz
FUZZ_MINUTES  ?= 30
FUZZ_ARGS     ?=
FUZZ_HARNESS  := $(BINDIR)/fuzz_harness

.PHONY: fuzz test-fuzz-corpus

$(FUZZ_HARNESS): tests/fuzz/fuzz_harness.c include/swiftflows.h $(LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(CFLAGS_C99) -o $@ $< $(LDFLAGS_LIB)

test-fuzz-corpus: lib $(FUZZ_HARNESS) ## Replay tests/fuzz/corpus: every file loads or fails with a status (no crash/hang)
	@scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	FUZZ_SCRATCH=$$scratch SWIFTFLOWS_NUM_THREADS=1 $(FUZZ_HARNESS) --timeout 120 tests/fuzz/corpus/*.h5

# The run uses a snapshot of the library (build/fuzz/run), so rebuilding the library meanwhile
# does not disturb it, and a harness built with AddressSanitizer and UndefinedBehaviorSanitizer
# (FUZZ_SANITIZE; the library itself is not instrumented, but every malloc/free in the process
# goes through ASan's allocator, which reports double and invalid frees and heap misuse).
FUZZ_SANITIZE ?= -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g

fuzz: lib venv ## Mutation-fuzz the model loader for FUZZ_MINUTES (default 30); findings in build/fuzz
	rm -rf $(FUZZ_DIR)/corpus $(FUZZ_DIR)/run $(FUZZ_DIR)/findings
	mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/run/bin $(FUZZ_DIR)/run/lib
	cp -P $(LIBDIR)/libswiftflows.so* $(FUZZ_DIR)/run/lib/
	$(CC) $(CFLAGS_C99) $(FUZZ_SANITIZE) -o $(FUZZ_DIR)/run/bin/fuzz_harness tests/fuzz/fuzz_harness.c $(LDFLAGS_LIB)
	SWIFTFLOWS_LIBRARY=$(CURDIR)/$(FUZZ_DIR)/run/lib/libswiftflows.so $(PY) tests/fuzz/make_seeds.py $(FUZZ_DIR)/corpus
	find tests/fuzz/corpus -name '*.h5' -exec cp {} $(FUZZ_DIR)/corpus/ \;
	SWIFTFLOWS_LIBRARY=$(CURDIR)/$(FUZZ_DIR)/run/lib/libswiftflows.so $(PY) tests/fuzz/fuzz.py \
	  --harness $(FUZZ_DIR)/run/bin/fuzz_harness --corpus $(FUZZ_DIR)/corpus --out $(FUZZ_DIR) \
	  --minutes $(FUZZ_MINUTES) $(FUZZ_ARGS)

clean: ## Remove build outputs (keeps .venv)
	rm -rf $(BUILD) .build .build-shared .build-cli .build-bench .build-tsan

# ---- Benchmarks (bench/README.md) ------------------------------------------------------------------
BENCH_SCRATCH     := .build-bench
BENCH_BIN         := $(BENCH_SCRATCH)/release/swiftflows-bench
BENCH_ARGS        ?=
LATENCY           := $(BINDIR)/latency
VENV_BENCH        := .venv-bench
# The PyTorch of bench-torch; e.g. TORCH_REQUIREMENT='torch --index-url https://download.pytorch.org/whl/cpu'
TORCH_REQUIREMENT ?= torch==2.13.*

KERNELS_BIN       := $(BINDIR)/bench_kernels
KERNELS_ARGS      ?=
# The kernels' own benchmark is compiled as SwiftPM compiles CFlowKernels: the Swift toolchain's
# clang (the system compiler when there is none) with Package.swift's flags.
SWIFT_CLANG       := $(shell d=$$(dirname "$$(command -v swift 2>/dev/null)" 2>/dev/null); [ -x "$$d/clang" ] && echo "$$d/clang")
KERNELS_CC        := $(if $(SWIFT_CLANG),$(SWIFT_CLANG),$(CC))

.PHONY: bench bench-torch bench-kernels test-alloc

# The C latency program is rebuilt on every use (one file, under a second).
define build-latency
	@mkdir -p $(BINDIR)
	$(CC) $(CFLAGS_C99) -o $(LATENCY) bench/c/latency.c $(LDFLAGS_LIB)
endef

bench: lib venv ## Benchmarks: swiftflows-bench table (BENCH_ARGS=...), C API and Python batch-1 latency, kernels
	swift build -c release --product swiftflows-bench --scratch-path $(BENCH_SCRATCH)
	$(BENCH_BIN) $(BENCH_ARGS)
	$(build-latency)
	$(LATENCY)
	SWIFTFLOWS_LIBRARY=$(CURDIR)/$(LIB) $(PY) bench/python_latency.py
	$(MAKE) --no-print-directory bench-kernels

bench-kernels: ## One coupling's float32 kernels timed alone, AVX2+FMA against portable (bench/c/kernels.c)
	@mkdir -p $(BINDIR)
	$(KERNELS_CC) -std=gnu11 -O3 -fno-math-errno -Wall -Wextra -ISources/CFlowKernels/include -ISources/CFlowKernels \
	  -o $(KERNELS_BIN) bench/c/kernels.c Sources/CFlowKernels/*.c -lm
	$(KERNELS_BIN) $(KERNELS_ARGS)

bench-torch: lib $(VENV_BENCH)/.ready ## Compare with the same flows in plain PyTorch (in .venv-bench)
	SWIFTFLOWS_LIBRARY=$(CURDIR)/$(LIB) $(VENV_BENCH)/bin/python bench/compare_torch.py

$(VENV_BENCH)/.ready: bindings/python/pyproject.toml | deps
	python3 -m venv $(VENV_BENCH)
	$(VENV_BENCH)/bin/python -m pip install -q $(TORCH_REQUIREMENT) numpy h5py
	$(VENV_BENCH)/bin/python -m pip install -q -e bindings/python
	@touch $@

test-alloc: lib ## Batch-1 sf_log_prob / sf_sample must not allocate (D=8, quick)
	$(build-latency)
	$(LATENCY) --check --quick --dim 8

# ---- Image data sets (Sources/FlowCore/Data/ImageDatasets.swift) ----------------------------------
# Fashion-MNIST: the Debian package installs the IDX files in /usr/share/datasets/fashion-mnist.
# Digits: scikit-learn's load_digits exported to HDF5 with the train/val/test split and baselines.
DATA_DIR      := $(BUILD)/data
DIGITS_H5     := $(DATA_DIR)/digits.h5
DATA_PACKAGES := dataset-fashion-mnist

.PHONY: data

data: $(DIGITS_H5) ## Image data: Fashion-MNIST (Debian package) and build/data/digits.h5 (scikit-learn)
	@missing=""; for p in $(DATA_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(DIGITS_H5): scripts/export_digits.py $(VENV)/.sklearn
	@mkdir -p $(DATA_DIR)
	$(PY) scripts/export_digits.py --output $@

$(VENV)/.sklearn: $(VENV)/.ready
	$(PY) -m pip install -q scikit-learn
	@touch $@

# ---- Image flows (issue: Fashion-MNIST quality bar) -------------------------------------------
FMNIST_DIR    := $(BUILD)/fashion-mnist
FMNIST_EPOCHS ?= 9
FMNIST_ARGS   ?= --preset glow --levels 2 --steps 8 --hidden 64 --preprocess logit --alpha 1e-6 \
                 --batch-size 64 --lr 2e-3 --warmup 500 --schedule cosine --clip-norm 50 --validation 0.05 --seed 1

.PHONY: fashion-mnist fashion-mnist-samples

fashion-mnist: cli data ## Train a Glow on Fashion-MNIST (about 55 minutes on 2 cores), report test bits/dim
	@mkdir -p $(FMNIST_DIR)
	$(BINDIR)/swiftflows train --data fashion-mnist:train --test fashion-mnist:test $(FMNIST_ARGS) \
	  --epochs $(FMNIST_EPOCHS) --checkpoint $(FMNIST_DIR)/checkpoint.h5 --output $(FMNIST_DIR)/glow.h5 \
	  --progress plain 2>&1 | tee $(FMNIST_DIR)/train.log
	$(MAKE) fashion-mnist-samples

fashion-mnist-samples: lib venv ## 64 samples at T = 0.7 and T = 1.0 from the trained Fashion-MNIST model
	SWIFTFLOWS_LIBRARY=$(CURDIR)/$(LIB) $(PY) scripts/sample_grid.py $(FMNIST_DIR)/glow.h5 $(FMNIST_DIR)/samples.png

# ---- Continuous flows (issue: FFJORD quality bar) ----------------------------------------------
# FFJORD on 2D toy data with the exact trace: dynamics MLP 64-64-64 (tanh, concat-squash),
# dopri5 at rtol = atol = 1e-5, adjoint gradients, RNODE penalties 0.01; batch 128, Adam 2e-3
# with 100 warm-up steps and cosine decay. One thread per data set; checkerboard needs more
# epochs (sharp edges) than 8gaussians.
CNF_DIR    := $(BUILD)/cnf
CNF_SETS   ?= 8gaussians checkerboard
CNF_EPOCHS_8gaussians   ?= 4
CNF_EPOCHS_checkerboard ?= 18
CNF_SPEC   := {"event_shape":[2],"layers":[{"type":"cnf","hidden":[64,64,64],"activation":"tanh","solver":"dopri5","rtol":1e-5,"atol":1e-5,"trace":"exact","kinetic_energy":0.01,"jacobian_norm":0.01}]}

.PHONY: cnf-toy

cnf-toy: cli ## Train FFJORD (exact trace) on 8gaussians and checkerboard in parallel, report test NLL and NFE
	@mkdir -p $(CNF_DIR)
	pids=""; for d in $(CNF_SETS); do \
	  case $$d in 8gaussians) e=$(CNF_EPOCHS_8gaussians);; *) e=$(CNF_EPOCHS_checkerboard);; esac; \
	  $(BINDIR)/swiftflows train --spec '$(CNF_SPEC)' --data toy:$$d:60000:1 --test toy:$$d:20000:2 \
	    --epochs $$e --batch-size 128 --lr 2e-3 --schedule cosine --warmup 100 --validation 0.05 \
	    --threads 1 --progress plain --checkpoint $(CNF_DIR)/$$d-checkpoint.h5 --output $(CNF_DIR)/$$d.h5 \
	    > $(CNF_DIR)/$$d.log 2>&1 & pids="$$pids $$!"; \
	done; rc=0; for p in $$pids; do wait $$p || rc=1; done; tail -n 2 $(CNF_DIR)/*.log; exit $$rc

# ---- Sanitizers and memcheck (issue: reliability) ---------------------------------------------
SAN_DIR := $(BUILD)/sanitize

.PHONY: check-sanitize

check-sanitize: lib cli ## ASan+UBSan+LSan C tests (C API; the C kernels), valgrind memcheck of the C example, TSan on the parallel Swift tests
	@command -v valgrind >/dev/null || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	@mkdir -p $(SAN_DIR)
	$(CC) -std=c99 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
	  -Iinclude -pthread -o $(SAN_DIR)/test_capi tests/c/test_capi.c $(LDFLAGS_LIB) -Wl,-rpath,$(CURDIR)/$(LIBDIR)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $(SAN_DIR)/test_capi
	$(CC) -std=gnu11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
	  -ISources/CFlowKernels/include -ISources/CFlowKernels -o $(SAN_DIR)/test_kernels \
	  tests/c/test_kernels_sanitize.c Sources/CFlowKernels/*.c -lm
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $(SAN_DIR)/test_kernels
	$(BINDIR)/swiftflows toy moons -n 500 -o $(SAN_DIR)/points.csv
	$(BINDIR)/swiftflows train --data toy:moons:2000:1 --epochs 1 --layers 2 --hidden 16 --progress none --output $(SAN_DIR)/model.h5
	valgrind --quiet --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite --error-exitcode=3 \
	  $(BINDIR)/score_csv $(SAN_DIR)/model.h5 < $(SAN_DIR)/points.csv > /dev/null
	swift test --sanitize=thread --scratch-path .build-tsan \
	  --filter 'TrainingTests/testGradientsAndTrainingAreBitIdentical|TrainingTests/testOptimizerStepsAreIdentical|CAPITests|SamplingTests|RuntimeTests'
	@echo "sanitizers and memcheck: clean"
