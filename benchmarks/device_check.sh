#!/usr/bin/env bash
# The one prepared call for a machine with a GPU (at most 9 minutes); run it first when one
# is lent:
#
#     bash benchmarks/device_check.sh [OUT_DIR]        # default: $OUT, else runs/device-check
#
# 0. what it needs: the package from this checkout (src/ when it is not installed) and the
#    project's dependencies, pytest included (part 2 runs the CUDA-marked tests); a machine without network gets those it lacks from wheels brought
#    in WHEELS (default .whl/, made here by `bash benchmarks/device_wheels.sh`), installed into a
#    temporary folder; still missing, it says which in one line and stops (exit 1)
# 1. the machine: nvidia-smi, torch, CUDA, bf16
# 2. benchmarks/precision_probe.py: each enwik8 member's forward and backward in the run's
#    precision against fp32 (the dtype each op ran in, the loss difference, the share of zero
#    recurrent-weight gradients, peak memory)
# 3. benchmarks/rnn_lanes.py: the enwik8 LSTM alone at 64, 256 and 512 lanes (where the
#    recurrence stops being latency-bound; benchmarks/gpu_recipe.py's arithmetic)
# 4. the CUDA-marked tests (tests/test_cuda.py: device chosen, bf16 autocast, checkpoints and
#    resume on the GPU, a data-limited compare with every arm)
# 5. benchmarks/throughput.py: each family's bytes/s against a plain PyTorch loop, and the
#    achieved FLOP/s against a matmul peak measured in the same run (the MFU proxy)
# 6. social against the channel closed (compare, stream regime) at the enwik8 preset's members,
#    batch and context on the bundled sample (the machine has no network): 100 steps an arm, no
#    checkpoint but the last, both dev curves printed
#
# Every part writes its output to OUT_DIR/NAME.txt and the script goes on after a failure, so one
# call brings back everything it could measure; summary.txt lists each part's exit status. On a
# machine without CUDA it runs part 1 and skips the rest cleanly (exit 0).
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/device-check}}"
fail() {  # bad input: one line on stderr, exit 2, before any part runs
    echo "device_check.sh: error: $*" >&2
    exit 2
}
if [[ -L "$out" ]]; then fail "$out is a symbolic link: give a folder of its own"; fi
mkdir -p "$out" 2> /dev/null || fail "$out: cannot make that folder (a file, or not writable)"
summary="$out/summary.txt"
{ : > "$summary"; } 2> /dev/null || fail "$out: cannot write there ($summary)"

part() {  # part NAME SECONDS COMMAND...: run it with a time limit, keep its output and status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start)) s" | tee -a "$summary"
    tail -n 25 "$out/$name.txt"
}

python=${PYTHON:-python3}
"$python" -c "import sys" > /dev/null 2>&1 || fail "PYTHON=$python does not run a Python"
missing() {  # the modules of the package and its dependencies that do not import
    "$python" -c "
import importlib
names = ['multitudes', 'torch', 'numpy', 'click', 'tqdm', 'matplotlib', 'safetensors',
         'tensorboardX', 'pyppmd', 'constriction', 'pytest']
gone = []
for name in names:
    try:
        importlib.import_module(name)
    except ImportError:
        gone.append(name)
print(' '.join(gone))" || echo "python-failed"  # a Python that cannot even ask: not 'none missing'
}
gone=$(missing)
if [[ " $gone " == *" multitudes "* ]]; then  # a checkout, not installed: run it from src/
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    gone=$(missing)
fi
wheels=${WHEELS:-.whl}
if [[ -n "$gone" ]] && compgen -G "$wheels/*.whl" > /dev/null; then
    site=$(mktemp -d)
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$site:$PYTHONPATH"
    gone=$(missing)
fi
if [[ -n "$gone" ]]; then
    echo "dependencies: missing $gone (bring their wheels: bash benchmarks/device_wheels.sh)" \
        | tee -a "$summary" >&2
    exit 1
fi
echo "dependencies: every one imports" >> "$summary"

part machine 30 bash -c 'nvidia-smi || true; "'"$python"'" -c "
import torch
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), \"bf16\", torch.cuda.is_bf16_supported())
"'

# DEVICE_CHECK_CPU=1 runs every part on the CPU at debug sizes (how the tests check the script
# end to end); without it a machine without CUDA stops here.
small=()
if [[ "${DEVICE_CHECK_CPU:-}" == 1 ]]; then
    echo "DEVICE_CHECK_CPU=1: every part on the CPU, at debug sizes" | tee -a "$summary"
    small=(1)
elif ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: the GPU parts (tests, throughput, compare) are skipped" | tee -a "$summary"
    exit 0
fi
sized() {  # sized ARGS... -- SMALL_ARGS...: the first on a GPU, the second at debug sizes
    local gpu=() cpu=() after=0
    for a in "$@"; do
        if [[ "$a" == "--" ]]; then after=1
        elif (( after )); then cpu+=("$a")
        else gpu+=("$a")
        fi
    done
    if (( ${#small[@]} )); then printf '%s\n' "${cpu[@]}"; else printf '%s\n' "${gpu[@]}"; fi
}

# The parts' limits add up to 8 minutes 50 seconds: one call of at most 10 (the lent machines'
# limit), with the start and the transfers. The compare's run folder stays outside OUT_DIR,
# which keeps 9 files.
mapfile -t probe < <(sized -- --preset debug --lanes 4 --context 32 --precision bf16)
part precision 60 "$python" benchmarks/precision_probe.py "${probe[@]}"
mapfile -t lanes < <(sized --steps 3 --repeats 2 -- --preset debug --lanes 2,8 --steps 2 \
    --repeats 1)
part rnn-lanes 60 "$python" benchmarks/rnn_lanes.py "${lanes[@]}"
part cuda-tests 120 "$python" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py
mapfile -t rows < <(sized --steps 20 --repeats 2 -- --only quick --steps 2 --repeats 1)
part throughput 90 "$python" benchmarks/throughput.py "${rows[@]}"
run=$(mktemp -d)/compare-run
mapfile -t shape < <(sized --preset enwik8 --set train.real_bytes=3276800 \
    --set train.dev_bytes=65536 --set 'members.*.warmup=10' --set train.eval_every=20 \
    -- --preset debug --set train.real_bytes=8192 --set evolution.every=0 \
    --set train.eval_every=4)
part compare 170 "$python" -m multitudes compare "${shape[@]}" --out "$run" --force --quiet \
    --set 'data.corpus="sample"' --set compare.multiplier=1.0 --set train.checkpoint_every=0
"$python" -c "
import json, sys
arms = json.load(open(sys.argv[1]))['arms']
for arm in ('social', 'isolated'):
    print(arm, 'dev curve (real bytes: best, consensus):', '; '.join(
        f\"{p['real_bytes']:,}: {p['best_dev_bpb']:.4f}, {p['consensus_dev_bpb']:.4f}\"
        for p in arms[arm]['curve']))
" "$run/results.json" >> "$out/compare.txt" 2>&1 || true
tail -n 2 "$out/compare.txt"
for name in results timings; do
    cp "$run/$name.json" "$out/compare-$name.json" 2>/dev/null || true
done
cat "$summary"
