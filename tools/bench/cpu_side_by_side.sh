#!/usr/bin/env bash
# percept's CPU rows and the PyTorch peer's, alternating, ROUNDS times, on this machine:
# VAE decode/encode 512x512 and one DiT forward (batch 1), each engine with 2 threads, median
# of 3 after a warm-up per run. Alternating rounds put both engines under the same neighbours
# on a shared machine; compare rows of the same round, and the medians over rounds.
#   tools/bench/cpu_side_by_side.sh [ROUNDS] [LOG]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
log=${2:-/dev/stdout}
cargo build --release --locked >/dev/null
for r in $(seq 1 "$rounds"); do
  {
    echo "# round $r $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
    ./target/release/percept bench --backend cpu --only vae --reps 3 2>&1 | grep '^cpu/'
    python3 tools/bench/torch_peer_vae_cpu.py 2>&1 | grep '^torch_peer'
    ./target/release/percept bench --backend cpu --only dit --reps 3 2>&1 | grep '^cpu/'
    python3 tools/bench/torch_peer_dit_cpu.py 2>&1 | grep '^torch_peer'
  } >>"$log"
done
