# glmlite — `make help` lists the targets.
CC      ?= gcc
PYTHON  ?= /usr/bin/python3
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
WARN    := -Wall -Wextra -Werror
BASE    := -std=c11 -D_GNU_SOURCE -pthread $(WARN)
LDLIBS  := -lm -pthread
BUILD   ?= build

# src/cli*.c are the command-line front end (main and subcommands); the rest is the engine library.
CLI_SRC  := $(wildcard src/cli*.c)
CLI_OBJ  := $(CLI_SRC:src/%.c=$(BUILD)/obj/%.o)
SRC      := $(filter-out $(CLI_SRC),$(wildcard src/*.c))
OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:tests/%.c=$(BUILD)/obj/tests/%.o)

.PHONY: all test debug fuzz bench deps help clean demo
.SECONDARY:
all: glmlite

help:
	@echo "make            build ./glmlite (portable; AVX2/FMA kernels chosen at run time)"
	@echo "make demo       build and run one chat turn on the demo model (models/demo)"
	@echo "make test       install test dependencies if missing, build, run every test"
	@echo "make debug      run the test suite under AddressSanitizer + UBSan"
	@echo "make fuzz       run the libFuzzer targets for longer (FUZZ_SECONDS=60 each)"
	@echo "make bench      glmlite bench on a checkpoint with GLM-4.7-Flash's layer widths"
	@echo "make clean      remove build outputs"

# AVX2/FMA kernels are compiled for that ISA only in their own file and
# called only after a CPU check, so the binary runs on any x86-64.
$(BUILD)/obj/kernels_avx2.o: EXTRA := -mavx2 -mfma -mf16c
$(BUILD)/obj/quant_avx2.o: EXTRA := -mavx2 -mfma -mf16c
$(BUILD)/obj/quant_x16.o: EXTRA := -mavx2 -mfma -mf16c

$(BUILD)/obj/%.o: src/%.c src/*.h | $(BUILD)/obj
	$(CC) $(BASE) $(CFLAGS) $(EXTRA) -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c tests/test.h src/*.h | $(BUILD)/obj/tests
	$(CC) $(BASE) $(CFLAGS) -Isrc -c $< -o $@

$(BUILD)/obj $(BUILD)/obj/tests:
	mkdir -p $@

$(BUILD)/libglm.a: $(OBJ)
	rm -f $@ && ar rcs $@ $^

glmlite: $(CLI_OBJ) $(BUILD)/libglm.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_runner: $(TEST_OBJ) $(BUILD)/libglm.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@bash tools/install-deps.sh

# The main job: one chat turn on the demo model that ships in models/demo.
DEMO_PROMPT ?= What is 17 times 23?
demo: deps glmlite
	@[ -f models/demo/config.json ] || { echo "models/demo is missing: generating a random stand-in"; \
	    $(PYTHON) tools/gen_checkpoint.py --preset tiny --dtype bf16 --out models/demo; }
	sh tools/demo/show.sh "$(DEMO_PROMPT)"

# TEST=name runs only the tests whose name contains it.
test: deps glmlite $(BUILD)/test_runner
	$(BUILD)/test_runner $(TEST)

debug:
	$(MAKE) BUILD=build-debug OPT=-O1 CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDLIBS="-lm -pthread -fsanitize=address,undefined" build-debug/test_runner glmlite-debug
	GLMLITE=./glmlite-debug build-debug/test_runner $(TEST)

glmlite-debug: $(CLI_SRC:src/%.c=build-debug/obj/%.o) build-debug/libglm.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Benchmarks on a checkpoint with GLM-4.7-Flash's real layer widths and 4 layers
# (generated once into build/bench, ~5 GB in bf16), quantized with glmlite itself.
BENCH_TYPES ?= bf16 int8 int4
BENCH_ARGS  ?= -p 512 -n 128 -r 3
build/bench/flash-bf16/config.json:
	$(PYTHON) tools/gen_checkpoint.py --preset flash --dtype bf16 --layers 4 --no-mtp --out build/bench/flash-bf16

build/bench/flash-%/config.json: build/bench/flash-bf16/config.json | glmlite
	rm -rf build/bench/flash-$*
	./glmlite quantize -m build/bench/flash-bf16 -o build/bench/flash-$* --type $*

bench: deps glmlite $(BENCH_TYPES:%=build/bench/flash-%/config.json)
	@for t in $(BENCH_TYPES); do echo "== $$t"; ./glmlite bench -m build/bench/flash-$$t $(BENCH_ARGS) || exit 1; done

# libFuzzer targets: every tests/fuzz/fuzz_*.c, linked with the whole engine.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_FLAGS   := -g -O1 -std=c11 -D_GNU_SOURCE -pthread -mavx2 -mfma -mf16c -Wall -Werror=implicit-function-declaration -Isrc
FUZZ_SAN     := address,undefined
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_OBJ     := $(SRC:src/%.c=build-fuzz/obj/%.o)

build-fuzz/obj/%.o: src/%.c src/*.h
	@mkdir -p build-fuzz/obj
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c $< -o $@

build-fuzz/%: tests/fuzz/%.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) $< $(FUZZ_OBJ) -o $@ -lm

# Each target runs FUZZ_SECONDS on its seeds plus the corpus it has grown.
fuzz: deps $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	    n=$$(basename $$f); mkdir -p build-fuzz/corpus/$$n; \
	    seeds=; [ -d tests/fuzz/seeds/$$n ] && seeds=tests/fuzz/seeds/$$n; \
	    if $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 build-fuzz/corpus/$$n $$seeds \
	          > build-fuzz/$$n.log 2>&1; then \
	        echo "fuzz $$n: ok, $$(grep -o 'stat::number_of_executed_units: [0-9]*' build-fuzz/$$n.log | grep -o '[0-9]*$$' || echo '?') runs in $(FUZZ_SECONDS)s"; \
	    else echo "fuzz $$n: FAILED (build-fuzz/$$n.log)"; tail -40 build-fuzz/$$n.log; exit 1; fi; \
	done

clean:
	rm -rf build build-debug build-fuzz glmlite glmlite-debug
