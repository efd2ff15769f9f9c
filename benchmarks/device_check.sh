#!/usr/bin/env bash
# The one prepared call for a machine with a GPU (at most 9 1/2 minutes); run it first when one
# is lent:
#
#     bash benchmarks/device_check.sh [OUT_DIR]        # default: $OUT, else runs/device-check
#
# 0. what it needs: the package from this checkout (src/ when it is not installed) and the
#    project's dependencies, pytest included (part 2 runs the CUDA-marked tests); a machine without network gets those it lacks from wheels brought
#    in WHEELS (default .whl/, made here by `bash benchmarks/device_wheels.sh`), installed into a
#    temporary folder; still missing, it says which in one line and stops (exit 1)
# 1. the machine: nvidia-smi, torch, CUDA, bf16
# 2. the CUDA-marked tests (tests/test_cuda.py: device chosen, bf16 autocast, checkpoints and
#    resume on the GPU, a data-limited compare with every arm)
# 3. benchmarks/throughput.py: each family's bytes/s against a plain PyTorch loop, and the
#    achieved FLOP/s against a matmul peak measured in the same run (the MFU proxy)
# 4. an enwik8-shaped compare (the enwik8 preset's members, batch and context, bf16 autocast) in
#    the data-limited regime, shrunk: the bundled sample (the machine has no network), U = 256
#    KiB, 2 MiB real bytes per arm, the distilled arms included
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

part machine 60 bash -c 'nvidia-smi || true; "'"$python"'" -c "
import torch
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), \"bf16\", torch.cuda.is_bf16_supported())
"'

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: the GPU parts (tests, throughput, compare) are skipped" | tee -a "$summary"
    exit 0
fi

# The parts' limits add up to 9 1/2 minutes: one call of at most 10 (the lent machines' limit).
# The compare's run folder stays outside OUT_DIR, which keeps 7 files: what such a call brings
# back is at most 8.
part cuda-tests 180 "$python" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py
part throughput 120 "$python" benchmarks/throughput.py --steps 30 --repeats 3
run=$(mktemp -d)/compare-run
part compare 200 "$python" -m multitudes compare --preset enwik8 --out "$run" --force \
    --quiet --set 'data.corpus="sample"' --set 'regime="data-limited"' \
    --set data.unique_bytes=262144 --set train.real_bytes=2097152 --set train.eval_every=16 \
    --set train.checkpoint_every=32 --set train.dev_bytes=65536 --set 'members.*.warmup=8' \
    --set compare.distill=true
for name in results timings; do
    cp "$run/$name.json" "$out/compare-$name.json" 2>/dev/null || true
done
cat "$summary"
