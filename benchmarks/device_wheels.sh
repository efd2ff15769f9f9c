#!/usr/bin/env bash
# Wheels for a GPU machine that cannot reach a package index: the project's dependencies its
# image lacks, at the versions installed here (what the tests ran with), for its Python.
#
#     bash benchmarks/device_wheels.sh [PYTHON_VERSION [DIR [PACKAGE ...]]]
#
# Defaults: Python 3.12, DIR .whl/ (ignored by git), and the packages that the lent machines'
# image was seen without (pyppmd, constriction, tensorboardX; its torch, numpy, click, tqdm,
# matplotlib and safetensors are there) and pytest with what it needs (iniconfig, pluggy,
# packaging, pygments), which the device check's CUDA tests run under and the image is not
# known to have. `benchmarks/device_check.sh` installs what DIR
# holds into a temporary folder when a dependency does not import, so the call on that machine
# is `bash benchmarks/device_check.sh "$OUT"` with DIR carried along.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
dir=${2:-.whl}
shift $(( $# < 2 ? $# : 2 ))
packages=("$@")
(( ${#packages[@]} )) || packages=(pyppmd constriction tensorboardX pytest iniconfig pluggy packaging
                                   pygments)
# name==version of each, as installed here; one line and exit 2 for one that is not
pins=$(python3 -c "
import importlib.metadata as metadata, sys
try:
    print(' '.join(f'{name}=={metadata.version(name)}' for name in sys.argv[1:]))
except metadata.PackageNotFoundError as e:
    print(f'device_wheels.sh: {e.name} is not installed here (activate the project venv)',
          file=sys.stderr)
    sys.exit(2)
" "${packages[@]}")
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
# downloaded aside, then put in place of DIR's wheels (and nothing else of DIR's)
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp "${platforms[@]}" -d "$fresh" $pins
mkdir -p "$dir"
rm -f "$dir"/*.whl
mv "$fresh"/*.whl "$dir"/
ls "$dir"
