#!/usr/bin/env bash
# The GPU check (issue 22), one script, at most ~8 minutes on one CUDA GPU:
#   1. the CUDA tests (tests/ marked or named cuda; they skip without a GPU)
#   2. the paper grid's preflight on the GPU (every shape, paper widths, a few steps; the cost table)
#   3. benchmarks/speed.py in fp32, then in bf16 + channels_last + compile
#   4. a tiny sweep with --gpus 0 (smoke profile, one small experiment)
# and, at the end, the lines to paste into benchmarks/README.md (### GPU), the card named.
#
#   bash benchmarks/gpu_check.sh                # on the CUDA machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu-dry-run  # anywhere: the same steps at the smallest size on the
#                                               # CPU, so the script cannot rot (tests/test_preflight.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CLDST=${CLDST:-.venv/bin/cldst}
OUT=${OUT:-$(mktemp -d -t cldst-gpu-check-XXXX)}
mkdir -p "$OUT"
export CLDST_OFFLINE=1  # never download: the preflight says what the data needs

if [[ "${1:-}" == "--cpu-dry-run" ]]; then
    DEVICE=cpu; PROFILE=smoke; GRID=adaptive; GPUS=""; TINY="--tiny --no-papermill --no-projection-archs"
    TESTS="tests/test_preflight.py -k refuses"  # a quick one: the suite runs the others
    FAST="--precision bf16 --channels-last"  # torch.compile on a CPU needs a C compiler and minutes: GPU only
else
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); use --cpu-dry-run" >&2
        exit 2
    fi
    DEVICE=cuda; PROFILE=paper; GRID=all; GPUS="--gpus 0"; TINY="--no-papermill"
    TESTS="tests -k cuda"
    FAST="--precision bf16 --channels-last --compile"
fi
CARD=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')")
echo "== gpu_check on $CARD ($DEVICE), results in $OUT"

echo "== 1. CUDA tests"
"$PY" -m pytest -q -p no:xdist $TESTS 2>&1 | tail -3 | tee "$OUT/tests.txt"

echo "== 2. preflight of the $PROFILE grid ($GRID) on $DEVICE"
# exit 1 is expected without the datasets (the data lines say so); the device part is what counts here
set +e
"$CLDST" preflight $GRID --profile $PROFILE --device $DEVICE --workers 1 --root "$OUT/runs" 2>&1 | tee "$OUT/preflight.txt"
set -e
grep -q "^  .* ok (" "$OUT/preflight.txt" || { echo "gpu_check: no shape passed the device check" >&2; exit 1; }
if grep -q " runs  FAILED: " "$OUT/preflight.txt"; then echo "gpu_check: a shape failed on $DEVICE" >&2; exit 1; fi

echo "== 3. speed.py: fp32, then bf16 + channels_last + compile"
"$PY" benchmarks/speed.py --device $DEVICE $TINY --json "$OUT/speed_fp32.json" > "$OUT/speed_fp32.txt"
"$PY" benchmarks/speed.py --device $DEVICE $TINY $FAST --json "$OUT/speed_fast.json" > "$OUT/speed_fast.txt"

echo "== 4. a tiny sweep ${GPUS:-on the CPU}"
"$CLDST" sweep adaptive --profile smoke --workers 2 $GPUS --root "$OUT/sweep" --quiet 2>&1 | tee "$OUT/sweep.txt"
grep -q "4 run, 0 already complete, 0 failed" "$OUT/sweep.txt"

echo "== lines for benchmarks/README.md (### GPU), $CARD, $(date -u +%F)"
"$PY" - "$OUT" "$CARD" <<'EOF'
import json, sys
from pathlib import Path
out, card = Path(sys.argv[1]), sys.argv[2]
for name, what in (("speed_fp32", "fp32"), ("speed_fast", "bf16 + channels_last (+ compile on GPU)")):
    s = json.loads((out / f"{name}.json").read_text())
    st, total = s["steps"], s["projection"]["total"]
    print(f"| {card} | {what} | dense {st['dense_images_per_s']:,.0f} img/s | DST {st['dst_images_per_s']:,.0f} img/s "
          f"| ratio {st['ratio']:.3f} | paper grid {total['total_h']:,.1f} device-h |")
for path in (out / "runs").glob("*/preflight.json"):
    pf = json.loads(path.read_text())
    for shape in pf["shapes"]:
        print(f"| {card} | preflight {shape['shape']} | step {1e3 * shape['step_s']:.1f} ms "
              f"| eval {1e6 * shape['eval_image_s']:.1f} us/image | peak {shape['peak_bytes'] / 2**20:,.0f} MiB |")
    if pf.get("cost"):
        print(f"| {card} | preflight cost | {pf['cost']['device_s'] / 3600:,.1f} device-h "
              f"| wall {pf['cost']['wall_s'] / 3600:,.1f} h | disk {pf['cost']['disk_bytes'] / 1e9:.1f} GB |")
EOF
echo "gpu_check: done"
