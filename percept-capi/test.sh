#!/usr/bin/env bash
# The C ABI's checks (run by scripts/test; alone: percept-capi/test.sh from anywhere):
# formatting, the committed header is current (cbindgen), the Rust-side tests (every entry
# point's argument checks, the three tasks against the Rust API), then the C and C++ examples
# built by the system compilers against include/percept.h and libpercept_capi.so, run under
# AddressSanitizer with leak detection. The C example compares its depth with the CLI's .npy
# for the same image, steps and seed.
# Time budget: 15 minutes cold (cbindgen, and percept's library without the CLI feature,
# compile once), under a minute warm; each step has its own timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=4
SEED=0
IMAGE=toy_data/FlyingChairs_small/data/00001_img1.ppm
MODEL=toy_data/demo_model.safetensors

for tool in gcc g++; do
  command -v "$tool" >/dev/null || { echo "percept-capi/test.sh: $tool not found" >&2; exit 1; }
done

cargo fmt --check -p percept-capi -p percept-capi-header
# The committed header is what cbindgen makes of the crate now.
timeout 600 cargo run --release --locked -q -p percept-capi-header
timeout 900 cargo build --release --locked -p percept-capi
timeout 600 cargo test --release --locked -p percept-capi
timeout 900 cargo build --release --locked --bin percept

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The reference: the CLI on the CPU, same image, steps and seed.
timeout 300 target/release/percept depth "$IMAGE" --model "$MODEL" --steps "$STEPS" --seed "$SEED" \
  --backend cpu --out "$work/cli" >/dev/null 2>"$work/cli.log" || { cat "$work/cli.log" >&2; exit 1; }

lib=target/release
asan=(-g -fsanitize=address -fno-omit-frame-pointer)
gcc -std=c11 -Wall -Wextra -Werror -pedantic "${asan[@]}" -I percept-capi/include \
  percept-capi/examples/depth.c -L "$lib" -lpercept_capi -Wl,-rpath,"$PWD/$lib" -lpthread -lm \
  -o "$work/depth"
g++ -std=c++17 -Wall -Wextra -Werror -pedantic "${asan[@]}" -I percept-capi/include \
  percept-capi/examples/threads.cpp -L "$lib" -lpercept_capi -Wl,-rpath,"$PWD/$lib" -lpthread \
  -o "$work/threads"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
timeout 300 "$work/depth" "$MODEL" "$IMAGE" "$work/cli/00001_img1_depth.npy" "$STEPS" "$SEED"
timeout 300 "$work/threads" "$MODEL" "$STEPS"
echo "percept-capi: all checks passed"
