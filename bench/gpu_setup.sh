#!/usr/bin/env bash
# Get a GPU machine that cannot reach any package index ready for `python -m bench.gpu_check`.
#
# The GPU machine's Python 3.12 has torch, pytorch-lightning, torchmetrics, scikit-learn, pandas,
# matplotlib, pyarrow, pluggy and pytest, but not MLflow, Hydra or omegaconf. So:
#
#   1. here, with PyPI reachable, from the repository root:
#        bash bench/gpu_setup.sh
#      fills .whl/ with manylinux wheels for Python 3.12 of what the GPU machine lacks: mlflow,
#      Hydra and its launchers and sweeper, and their dependencies, less what is already there
#      (about 40-60 MB; antlr4-python3-runtime 4.9.3 has no wheel on PyPI, so one is built).
#      .whl/ is added to .git/info/exclude: it is never committed, so carry it (`carry: [".whl"]`).
#   2. there, from the repository root, one line:
#        bash bench/gpu_setup.sh --install && python3 -m bench.gpu_check --json gpu_check.json
#      which runs, with no network:
#        python3 -m pip install --no-index --find-links .whl mlflow==3.17.2 hydra-core ...
#        python3 -m pip install --no-deps --no-build-isolation -e .
#
# Remove the wheels afterwards with `rm -rf .whl`. PYTHON=... picks the interpreter (python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WHEELS=.whl
# What the project needs beyond what the GPU machine has (versions as in pyproject.toml).
NEEDS=(mlflow==3.17.2 "hydra-core>=1.3,<1.4" "omegaconf>=2.3,<2.4" "hydra-joblib-launcher>=1.2"
       "hydra-submitit-launcher>=1.2" "optuna>=4,<6")
# Already on the GPU machine (its image's package list): their wheels are not carried.
THERE="aiohappyeyeballs aiohttp aiosignal annotated_doc anyio attrs certifi charset_normalizer click
cloudpickle colorama contourpy cycler filelock fonttools frozenlist fsspec h11 httpcore httpx idna
jinja2 joblib kiwisolver markdown_it_py markupsafe mdurl mpmath msgpack multidict networkx numpy
nvidia_ml_py packaging pandas pillow pluggy prometheus_client propcache protobuf psutil pyarrow
pygments pyparsing python_dateutil pytorch_lightning pyyaml regex requests rich scikit_learn scipy
setuptools shellingham six sympy tabulate threadpoolctl torch torchmetrics tqdm typer
typing_extensions urllib3 werkzeug wheel yarl zipp lightning lightning_utilities triton"

install() {
    # On the GPU machine: resolve against what is installed plus .whl/ only. If a version range
    # cannot be met offline (a package there newer than mlflow allows), install the carried wheels
    # as they are and say so; `pip check` lists what does not match.
    if ! "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" "${NEEDS[@]}"; then
        echo "gpu_setup: resolving offline failed; installing the carried wheels without resolving" >&2
        "$PYTHON" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
        "$PYTHON" -m pip check || true
    fi
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e .
}

download() {
    # Here: every wheel of the closure for CPython 3.12 on x86-64 Linux, then drop what is there.
    mkdir -p "$WHEELS"
    grep -qxF "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >>.git/info/exclude
    "$PYTHON" -m pip wheel -q --no-deps -w "$WHEELS" antlr4-python3-runtime==4.9.3  # pure Python
    local platforms=()
    for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
        platforms+=(--platform "${p}_x86_64")
    done
    local attempt out missing
    for attempt in 1 2 3 4 5; do  # a package with no wheel on PyPI is built, if pure Python
        if out=$("$PYTHON" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
            --abi cp312 "${platforms[@]}" --find-links "$WHEELS" -d "$WHEELS" "${NEEDS[@]}" 2>&1); then
            break
        fi
        missing=$(grep -o 'No matching distribution found for [^ ]*' <<<"$out" | awk '{print $NF}' | head -1)
        if [[ -z $missing || $attempt == 5 ]]; then echo "$out" >&2; exit 1; fi
        echo "gpu_setup: no wheel of $missing for Python 3.12; building one" >&2
        "$PYTHON" -m pip wheel -q --no-deps -w "$WHEELS" "$missing"
    done
    local wheel name
    for wheel in "$WHEELS"/*.whl; do
        name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z.-' 'a-z__')
        if [[ " ${THERE//$'\n'/ } " == *" $name "* ]]; then rm -f "$wheel"; fi
    done
    echo "gpu_setup: $(ls "$WHEELS"/*.whl | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS/:"
    ls "$WHEELS"
    echo "On the GPU machine, from the repository root (carry $WHEELS):"
    echo "  bash bench/gpu_setup.sh --install && python3 -m bench.gpu_check --json gpu_check.json"
}

case "${1:-}" in
    "") download ;;
    --install) install ;;
    *) echo "usage: bash bench/gpu_setup.sh [--install]" >&2; exit 2 ;;
esac
