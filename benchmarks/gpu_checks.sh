#!/usr/bin/env bash
# The GPU figures of issue 16, in one go, for a machine with a CUDA GPU (nothing here needs the
# network or /work/shared; datasets other than digits need their files in $SCINAS_DATA_DIR).
#   bash benchmarks/gpu_checks.sh [OUT_DIR]        (about 10 minutes on an H100/H200-class GPU)
# 1. the benchmark step (paper-size supernet, DARTS first order, batch 64; DARTS_V2 network step)
#    in fp32, bf16 and compiled, with peak torch.cuda.max_memory_allocated;
# 2. the same steps fed through scinas' data path (--feed) against ready synthetic batches;
# 3. the wall time of the default (tiny) run and of the small preset's run on Fashion-MNIST
#    (its time budgets, 780 s + 1380 s, fix the wall time; the epochs reached are the figure);
# 4. a bf16 run end to end on the GPU and the GPU test of the data path.
set -u
OUT=${1:-gpu-checks-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_bf16_supported())" | tee -a "$OUT/gpu.txt"

step() {  # label, then search_step.py options
  local label=$1; shift
  echo "== $label" | tee -a "$OUT/steps.txt"
  timeout 900 "$PY" benchmarks/search_step.py --device cuda --repeats 5 "$@" 2>&1 | tee -a "$OUT/steps.txt"
}
for s in "--strategy darts --order 1 --batch 64 --checkpoint 0" "--strategy discrete --batch 64"; do
  step "fp32 $s" $s
  step "bf16 $s" $s --precision bf16
  step "fp16 $s" $s --precision fp16
  step "compile fp32 $s" $s --compile
  step "compile bf16 $s" $s --compile --precision bf16
  step "feed fp32 $s" $s --feed
  step "feed bf16 $s" $s --feed --precision bf16
done
# kernel launch overhead or compute: a step whose time barely grows from batch 64 to 256 is
# launch-bound (the GPU waits on Python/launches); one that grows ~4x is compute-bound
step "fp32 darts batch 256" --strategy darts --order 1 --batch 256 --checkpoint 0 2>&1 || true
step "bf16 darts batch 256" --strategy darts --order 1 --batch 256 --checkpoint 0 --precision bf16 || true

run() {  # label, then scinas options
  local label=$1; shift
  echo "== $label" | tee -a "$OUT/runs.txt"
  /usr/bin/time -f "wall %e s, max RSS %M KB" "$PY" -m scinas run --device cuda --quiet "$@" \
    2>&1 | tail -3 | tee -a "$OUT/runs.txt"
}
run "default (tiny, digits)" --out "$OUT/tiny" --overwrite
run "default (tiny, digits) bf16" --out "$OUT/tiny-bf16" --overwrite --set precision=bf16
run "small, fashion-mnist, fp32" --preset small --data fashion-mnist --out "$OUT/small" --overwrite
run "small, fashion-mnist, bf16" --preset small --data fashion-mnist --out "$OUT/small-bf16" \
  --overwrite --set precision=bf16
for d in small small-bf16; do
  "$PY" - "$OUT/$d" <<'PYEOF' | tee -a "$OUT/runs.txt"
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
r = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
b = json.loads((run / "budget.json").read_text()) if (run / "budget.json").is_file() else {}
print(run.name, "test", r.get("test"), "wall", r.get("wall_seconds"),
      {k: (v.get("epochs"), v.get("steps_per_epoch")) for k, v in b.items()})
PYEOF
done
"$PY" -m pytest -q tests/test_precision.py -k gpu 2>&1 | tail -2 | tee -a "$OUT/runs.txt"
echo "figures in $OUT (steps.txt, runs.txt)"
