#!/usr/bin/env bash
# Issue 16's CPU figures for DDP and mixed precision, to run ALONE on the 2-core machine.
#   bash benchmarks/cpu_checks.sh [OUT_DIR] [--long]
# 1. DDP, paper-size supernet at global batch 64, first-order DARTS: 2 processes x 1 thread
#    against 1 process x 2 threads, seconds per step and the genotype after the steps
#    (benchmarks/ddp_step.py; ~5-10 minutes); then the same through the CLI on digits at the test
#    setting of tests/test_ddp.py (~2 minutes): the same genotype.json.
# 2. bf16 against fp32: the benchmark's search step (first order, batch 64) and its peak RSS
#    (~5 minutes).
# 3. with --long: Fashion-MNIST --preset small in fp32 and in bf16 (~40 minutes each: the preset's
#    time budgets; needs fashion-mnist in $SCINAS_DATA_DIR or the network).
set -u
OUT=${1:-cpu-checks-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}

"$PY" benchmarks/ddp_step.py --nproc 2 --threads 1 --batch 64 --steps 3 | tee "$OUT/ddp_step.json"

SETS="--set search.epochs=2 --set search.steps_per_epoch=4 --set search.C=4 --set search.layers=3
 --set search.max_samples=256 --set search.batch_size=32 --set search.arch_lr=0.003
 --set search.ops=[skip_connect,sep_conv_3x3,max_pool_3x3]"
OMP_NUM_THREADS=1 "$PY" -m scinas search --quiet --nproc 2 --out "$OUT/ddp2x1" $SETS
OMP_NUM_THREADS=2 "$PY" -m scinas search --quiet --out "$OUT/one1x2" $SETS
cmp "$OUT/ddp2x1/genotype.json" "$OUT/one1x2/genotype.json" && echo "CLI: same genotype" \
  | tee -a "$OUT/ddp_step.json"

for p in fp32 bf16; do
  "$PY" benchmarks/search_step.py --device cpu --strategy darts --order 1 --batch 64 \
    --checkpoint 0 --repeats 3 --precision $p | tee "$OUT/step-$p.txt"
  "$PY" benchmarks/search_step.py --device cpu --strategy discrete --batch 64 --repeats 3 \
    --precision $p | tee -a "$OUT/step-$p.txt"
done

if [ "${2:-}" = "--long" ]; then
  for p in fp32 bf16; do
    /usr/bin/time -f "wall %e s" "$PY" -m scinas run --preset small --data fashion-mnist \
      --quiet --set precision=$p --out "$OUT/fmnist-$p" 2>&1 | tail -2 | tee "$OUT/fmnist-$p.txt"
  done
fi
