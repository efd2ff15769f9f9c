#!/usr/bin/env bash
# Issue 42's measurement: the `horizons` preset at 16 epochs of U (every population arm: social,
# the independent ensemble, the reference at 2U, q0's snapshots, generations 2 and 3, generation
# 3's genomes apart) and at 64 (social, the ensemble, 2U, the snapshots and social+snapshots,
# with the cycle length chosen on the dev slice at 16 kept: 8 cycles of 8 epochs), each a set
# of seeds of
# benchmarks/data_limited.py (resumable: run it again after a kill), then the figure.
#
#     bash benchmarks/horizons.sh [OUT] [SEEDS]     # default runs/horizons, seeds 1
#     # one seed on the project machine, one thread each: ~30-40 min (16 epochs), ~85 min (64)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/horizons}
seeds=${2:-1}
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/h16"
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/h64" \
    --set train.real_bytes=$((65536 * 64)) --set compare.generations=0 \
    --set compare.apart=false --set compare.snapshot_cycles=8 --set compare.snapshot_social=true
python benchmarks/horizons_figure.py "$out/h16" "$out/h64" --png "$out/horizons.png" \
    --html "$out/horizons.html"
