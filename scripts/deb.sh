#!/bin/bash
# Builds the Debian package: the release binary, the man pages and shell
# completions generated from its clap definitions (into target/assets), then
# `cargo deb --no-build`. Prints the path of the .deb on its last line.
# Needs cargo-deb (`cargo install cargo-deb --locked`, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "scripts/deb.sh: cargo-deb is not installed (cargo install cargo-deb --version 3.8.0 --locked)" >&2
  exit 1
fi
cargo build --release --locked --bin proclens >&2
bin="${CARGO_TARGET_DIR:-target}/release/proclens"
rm -rf target/assets
"$bin" generate man target/assets/man
for shell in bash zsh fish; do
  "$bin" generate completions "$shell" target/assets/completions
done
cargo deb --no-build --locked --output target/debian/ 2>&1 | tail -n1
