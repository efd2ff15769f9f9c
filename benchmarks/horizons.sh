#!/usr/bin/env bash
# Issue 42's measurement: the `horizons` preset at 16 and 64 epochs of U, each a set of seeds of
# benchmarks/data_limited.py (resumable: run it again after a kill), then the figure.
#
# 16 epochs: social, the independent ensemble, the reference at 2U, q0's snapshots and the
# social arm on the same cycles, generations 2 and 3, generation 3's genomes apart, every
# generation mixed (`lineage`), and the ensemble given more compute: 1.63x its epochs
# (generation 3's) and 16 members (4x, the three generations' lineage).
# 64 epochs: social, the ensemble, 2U, the snapshots and social+snapshots (the cycle length
# chosen on the dev slice at 16 kept: 8 cycles of 8 epochs), and the ensemble given the
# snapshot arms' 1.29x compute as epochs and as members (5 of them), and the ensemble with each
# family's dropout re-swept on the dev slice at 64 epochs (docs/horizons/sweep-recipes-64ep.jsonl);
# then the 64-epoch set again with every arm on those recipes (h64r). Generations to 8 at 16
# epochs, bred by evolution (g8), with the founders' genomes in every generation (c8), and bred
# with every elder as teacher (a8).
#
#     bash benchmarks/horizons.sh [OUT] [SEEDS]     # default runs/horizons, seeds 1
#     # one seed on the project machine, one thread: ~80 min (16 epochs), ~160 min (64),
#     # ~100 min (64, re-tuned), ~60 min (g8), ~45 min (c8), ~85-100 min (a8)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/horizons}
seeds=${2:-1}
# the 64-epoch sets' common arms: social, the ensemble, 2U, the snapshots and social+snapshots
at64=(--set train.real_bytes=$((65536 * 64)) --set compare.generations=0 --set compare.apart=false
      --set compare.snapshot_cycles=8 --set compare.snapshot_social=true)
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/h16" \
    --set compare.snapshot_social=true --set compare.lineage=true \
    --set "compare.ensemble_compute=[1.63]" --set "compare.ensemble_members=[16]"
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/h64" \
    "${at64[@]}" \
    --set "compare.ensemble_compute=[1.2917]" --set "compare.ensemble_members=[5]" \
    --set compare.retuned.gru.dropout=0.2 --set compare.retuned.lstm.dropout=0.3 \
    --set compare.retuned.gpt.dropout=0.1 --set compare.retuned.looped.dropout=0.1
# The same 64 epochs with every arm's members on the re-tuned recipes (social, the ensemble, 2U,
# the snapshots and social+snapshots; its ensemble is h64's isolated-retuned bit for bit)
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/h64r" \
    "${at64[@]}" \
    --set members.0.dropout=0.2 --set members.1.dropout=0.3 \
    --set members.2.dropout=0.1 --set members.3.dropout=0.1
# Generations 1..8 at 16 epochs, each taught by its parent, the last one's genomes apart, and
# every generation mixed (the set's social, isolated and 2U arms are those of h16, bit for bit)
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/g8" \
    --set compare.generations=8 --set compare.snapshot_cycles=0 --set compare.lineage=true
# Generations 1..8 with evolution off: the founders' genomes in every generation, each taught by
# its parent (chain distillation; culture without selection)
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/c8" \
    --set compare.generations=8 --set compare.snapshot_cycles=0 --set compare.lineage=true \
    --set compare.breed=false --set compare.apart=false
# Generations 1..8, bred, each taught by every generation before it (teachers = all: Slowrun's
# PR #30 against its chain, #31); generations 1 and 2 are g8's, bit for bit
python benchmarks/data_limited.py --preset horizons --seeds "$seeds" --jobs 1 --out "$out/a8" \
    --set compare.generations=8 --set compare.snapshot_cycles=0 --set compare.lineage=true \
    --set compare.teachers=all --set compare.apart=false
python benchmarks/horizons_figure.py "$out/h16" "$out/h64" --png "$out/horizons.png" \
    --html "$out/horizons.html"
python benchmarks/generations_figure.py "$out/g8" --png "$out/generations.png"
python benchmarks/generations_figure.py "$out/c8" --png "$out/chain.png"
python benchmarks/generations_figure.py "$out/a8" --png "$out/teachers-all.png"
