#!/bin/bash
# The full soak: a million reads from 100 containers against a release
# build, printing the daemon's RSS, fds and threads before, halfway and after.
# (scripts/test.sh runs the same test with fewer reads.)
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_READS=${SOAK_READS:-1000000} cargo test --release --locked --test soak -- --nocapture
