# A thin front to CMake. `make run` and `make test` are the two commands README.md gives.
BUILD ?= build
TEST_BUILD ?= build-test
JOBS ?= $(shell nproc)

.PHONY: all deps build run test test-fuzz test-valgrind fuzz format format-check bench bench-delivery bench-overload clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# Runs botgate on its embedded defaults: TLS on 8443 with a development certificate, a
# private redis-server in var/redis, stopped with botgate.
run: build
	./$(BUILD)/botgate serve

# The whole suite, built with ASan+UBSan: unit tests, then integration tests against a
# real redis-server and a real TLS listener, then every fuzz target for 5 s.
test: deps format-check
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBOTGATE_SANITIZE=ON
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)
	bash scripts/deps.sh fuzz && bash tests/fuzz/run.sh 5

# Every libFuzzer target (tests/fuzz/) for a few seconds each, built with clang in
# build-fuzz/: a crash, a leak or a broken property fails it. `make test` runs this too.
test-fuzz:
	bash scripts/deps.sh fuzz
	bash tests/fuzz/run.sh 5

# The ingress integration test with botgate under valgrind memcheck, built without
# sanitizers in build-valgrind/ (tests/valgrind/botgate.sh): a memory error or a definite
# leak in any botgate it starts fails the test. About 2 minutes on 2 cores.
VALGRIND_BUILD ?= build-valgrind
test-valgrind:
	bash scripts/deps.sh valgrind
	cmake -S . -B $(VALGRIND_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBOTGATE_SANITIZE=OFF
	cmake --build $(VALGRIND_BUILD) -j $(JOBS)
	cd $(VALGRIND_BUILD)/tests && VALGRIND_BOTGATE_BIN=$(CURDIR)/$(VALGRIND_BUILD)/botgate \
	  BOTGATE_BIN=$(CURDIR)/tests/valgrind/botgate.sh BOTGATE_SOURCE_DIR=$(CURDIR) \
	  BOTGATE_TOOLS_DIR=$(CURDIR)/$(VALGRIND_BUILD)/tests ./it_test_ingress

# The same for longer: FUZZ_SECONDS per target (make fuzz FUZZ_SECONDS=600). What the
# fuzzers find is kept in build-fuzz/fuzz/work/ and seeds the next run.
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/deps.sh fuzz
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(SOURCES)
format-check:
	@clang-format --dry-run --Werror $(SOURCES) && echo "format: clean"

bench: build
	bash scripts/deps.sh bench
	bash tests/bench/run.sh

# The delivery benchmark (issue 4): the dispatcher against tests/tools/slow_bot, a bot that
# answers at once and one that takes 1 s (tests/bench/README.md, "Delivery benchmark").
bench-delivery: build
	bash scripts/deps.sh bench
	bash tests/bench/delivery.sh

# The overload benchmark (issue 9): botgate at its connection cap and at twice it.
bench-overload: build
	bash scripts/deps.sh bench
	bash tests/bench/overload.sh

clean:
	rm -rf $(BUILD) $(TEST_BUILD) build-fuzz
