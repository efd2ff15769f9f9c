#!/usr/bin/env bash
# Issue 42's question asked with today's arms, one seed: the social arm against the independent
# ensemble (the isolated members, mixed) at 16 and 64 epochs of U (the `limited` preset's 64
# KiB), no students, the data-scaling reference at 1U and 2U. Each horizon is a set of seeds of
# benchmarks/data_limited.py (resumable: run it again after a kill), its table in OUT/hE/table.md.
#
#     bash benchmarks/horizons_first_look.sh [OUT]        # default runs/horizons; ~11 + ~45 min
#                                                           # of one thread on the project machine
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/horizons}
common=(--preset limited --seeds 1 --jobs 1 --set compare.distill=false
        --set compare.generations=0 --set "compare.unique_multiples=[1, 2]"
        --set compare.reference_min_epochs=0)
for epochs in 16 64; do
    python benchmarks/data_limited.py "${common[@]}" --out "$out/h$epochs" \
        --set train.real_bytes=$((65536 * epochs))
done
