#!/bin/sh
# botgate under valgrind memcheck, for `make test-valgrind`: the integration harness starts
# this in place of botgate (BOTGATE_BIN), with the real binary in VALGRIND_BOTGATE_BIN (the
# harness strips BOTGATE_* variables from its children). Any memory error or definite or
# indirect leak makes the exit status 99, which the harness's clean-stop check fails on;
# valgrind's report goes to stderr, into the botgate log the harness prints on failure.
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --num-callers=30 "$VALGRIND_BOTGATE_BIN" "$@"
