#!/bin/bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 60)
# from the checked-in seed corpus (fuzz/seeds, real captured files). Needs
# cargo-fuzz and a nightly toolchain (`cargo install cargo-fuzz`,
# `rustup toolchain install nightly`). New corpus entries go to fuzz/corpus
# (not checked in); a crash stops the run and leaves its input in
# fuzz/artifacts: add it as a regression test before fixing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECONDS:-60}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
for t in cgroup_files proc_pid mountinfo host_files; do
  mkdir -p "corpus/$t"
  echo "== $t (${secs}s)"
  status=0
  cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units)|panicked|ERROR|SUMMARY|Test unit written" "$log" || true
  if [ "$status" != 0 ]; then
    echo "$t FAILED (exit $status)"
    failed=1
  fi
done
exit "$failed"
