# A thin front to CMake. `make run` and `make test` are the two commands README.md gives.
BUILD ?= build
TEST_BUILD ?= build-test
JOBS ?= $(shell nproc)

.PHONY: all deps build run test test-fuzz test-valgrind fuzz format format-check bench bench-profile \
	bench-delivery bench-logging bench-relay bench-overload clean docker-check docker-footprint \
	docker-rootfs

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
# real redis-server and a real TLS listener, then every fuzz target for 5 s, then the
# ingress integration test under valgrind.
test: deps format-check docker-check
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBOTGATE_SANITIZE=ON
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)
	bash scripts/deps.sh fuzz && bash tests/fuzz/run.sh 5
	$(MAKE) test-valgrind

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

# Where botgate's CPU goes (issue 8): one botgate TLS auth-reused run under perf record,
# broken down by part of the request path into tests/bench/results/profile.md.
bench-profile: build
	bash scripts/deps.sh bench
	BENCH_TARGETS=auth-reused BENCH_ROUNDS=1 BENCH_PROFILE=1 bash tests/bench/run.sh

# The delivery benchmark (issue 4): the dispatcher against tests/tools/slow_bot, a bot that
# answers at once and one that takes 1 s (tests/bench/README.md, "Delivery benchmark").
bench-delivery: build
	bash scripts/deps.sh bench
	bash tests/bench/delivery.sh

# The access log and metrics on against them off, on the ack path (issue 5):
# tests/bench/logging.sh.
bench-logging: build
	bash scripts/deps.sh bench
	bash tests/bench/logging.sh

# docker/: the Kubernetes manifests against the Kubernetes and cert-manager schemas and
# botgate's contract, the Dockerfile's lint, the compose file (tests/k8s/check.js, npm
# packages pinned in tests/k8s/package-lock.json). `make test` runs this.
docker-check:
	bash tests/k8s/run.sh

# docker/Dockerfile's stages run without a Docker engine: each in a debootstrapped Debian 12
# root (build-docker/), RUN through chroot; then the runtime root serves, answers its
# HEALTHCHECK, stores an activity and stops on SIGTERM (docker/rootfs-build.js). As root;
# downloads Debian packages; a few minutes. Not part of `make test`.
docker-rootfs:
	bash scripts/deps.sh manifests docker
	node docker/rootfs-build.js

# botgate's memory and CPU idle and under load, from /proc: the figures behind the
# Deployment's resources (docker/footprint.sh).
docker-footprint: build
	bash scripts/deps.sh bench
	bash docker/footprint.sh

# The relay benchmark (issue 6): replies straight to the test Connector against replies
# through botgate's relay (tests/bench/relay.sh).
bench-relay: build
	bash scripts/deps.sh bench
	bash tests/bench/relay.sh

# The overload benchmark (issue 9): botgate at its connection cap and at twice it.
bench-overload: build
	bash scripts/deps.sh bench
	bash tests/bench/overload.sh

clean:
	rm -rf $(BUILD) $(TEST_BUILD) build-fuzz
