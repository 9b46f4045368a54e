#!/bin/bash
# The `paper` suite on one GPU, time-boxed: `bash benchmarks/paper_gpu.sh OUT SECONDS [DATASETS...]`.
# Runs tests/test_cuda.py beside a `bench --suite paper` sweep at e 0.2 / 0.4 (then 0.6 / 0.8 if time is
# left), stops the sweep after SECONDS (the store keeps every finished job; a later call resumes), and
# leaves in OUT env.txt, cuda_tests.txt, bench.log, dmon.txt, results.db, runs.tgz
# (run files without weights or checkpoints) and teachers.tgz (the teachers' run directories, less
# their output caches).
# EXTRA: more bench arguments (a short local check: EXTRA='--set train.epochs=6 --set train.warmup=3');
# SUITE: another suite (a name or a YAML file); LEVELS='0.2 0.4' runs only those levels; CUDA_TESTS=0
# skips the tests; a results.db already in SWEEP is resumed (its stored students are skipped).
# Expects earlykd and aeon importable (on a machine without them: benchmarks/results/paper-gpu/summary.md).
set -u
OUT=$(cd "${1:?OUT}" && pwd) || exit 2; BUDGET=${2:?SECONDS}; shift 2
DATASETS=${*:-GunPoint ArrowHead ItalyPowerDemand BasicMotions ACSF1 PickupGestureWiimoteZ OSULeaf JapaneseVowels}
SWEEP=${SWEEP:-/tmp/paper}
WORKERS=${WORKERS:-$(( $(nproc) - 1 ))}
export PYTHONUNBUFFERED=1
start=$(date +%s)
{ date -u; nproc; nvidia-smi -L 2>&1
  python3 -c "import sys, torch, numpy, sklearn, aeon; print(sys.version.split()[0], torch.__version__,
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda', numpy.__version__, sklearn.__version__, aeon.__version__)"
} > "$OUT/env.txt" 2>&1 || { echo "environment check failed" >> "$OUT/env.txt"; exit 4; }
# Many small processes share the GPU: run them under MPS where it starts and serves (else without it).
if command -v nvidia-cuda-mps-control > /dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p /tmp/mps /tmp/mps-log
  if nvidia-cuda-mps-control -d && timeout 60 python3 -c "import torch; assert torch.ones(2, device='cuda').sum() == 2"
  then echo "MPS on" >> "$OUT/env.txt"
  else echo quit | nvidia-cuda-mps-control; echo "MPS off" >> "$OUT/env.txt"; fi
fi
nvidia-smi dmon -s u -d 10 > "$OUT/dmon.txt" 2>&1 &
dmon=$!
[ "${CUDA_TESTS:-1}" = 0 ] ||
  (timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$OUT/cuda_tests.txt" 2>&1) &
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
IFS=, read -ra LEVELS <<< "${LEVELS:-0.2 0.4,0.6 0.8}"
for e in "${LEVELS[@]}"; do
  t=$(left); [ "$t" -gt 30 ] || break
  echo "== e $e: $t s left ($(date -u +%T))" >> "$OUT/bench.log"
  timeout -s INT -k 20 "$t" python3 -m earlykd bench --suite "${SUITE:-paper}" --datasets $DATASETS --earliness $e \
    --out "$SWEEP" --workers "$WORKERS" --threads 1 --no-progress ${EXTRA:-} >> "$OUT/bench.log" 2>&1
  echo "== exit $? ($(date -u +%T))" >> "$OUT/bench.log"
done
kill $dmon 2> /dev/null; wait
cp "$SWEEP/results.db" "$OUT/"
cd "$SWEEP" || exit 3
tar czf "$OUT/runs.tgz" --exclude='*.safetensors' --exclude='teacher-*' runs
find runs -maxdepth 2 -path 'runs/teacher-*' -type f ! -name 'teacher_outputs-*' | tar czf "$OUT/teachers.tgz" -T -
