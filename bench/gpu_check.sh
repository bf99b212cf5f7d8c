#!/usr/bin/env bash
# The GPU check: one unattended command that proves training, evaluation and merging on a GPU and
# measures them (docs/gpu.md). On the GPU machine, from the repository root, with the wheel set(s)
# of bench/gpu_wheels.sh carried:
#
#   bash bench/gpu_check.sh                 # at most 8 min (480 s) on an H100; JSON + log under $OUT
#   bash bench/gpu_check.sh --install-only  # only install the carried wheels (first of two calls)
#   bash bench/gpu_check.sh --tiny          # the CPU rehearsal: same steps, tiny model (make bench)
#   bash bench/gpu_check.sh --steps pitfalls,correctness   # only these steps (install and env always run)
#
# Steps, each in its own process under its own time limit, so one failure or hang does not eat
# the rest: install, env, pitfalls, correctness, deepspeed, eval, evalrate, throughput; then a summary.
# Writes $OUT/gpu_check.json, $OUT/gpu_check.log and $OUT/eval_rates.{json,md} (default OUT: bench/out). Work files (the
# 7B model, runs) go to $AK_GPU_WORK (default /tmp/ak-gpu-check), the private site folder to
# $AK_GPU_SITE (default /tmp/ak-gpu-site): never the system site. Exit 0 when no check failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TINY=0; INSTALL_ONLY=0; ONLY=""
KNOWN_STEPS="pitfalls correctness deepspeed eval evalrate throughput"
while (( $# )); do
  case "$1" in
    --tiny) TINY=1 ;;
    --install-only) INSTALL_ONLY=1 ;;
    --steps)
      shift; ONLY="${1:-}"
      for s in ${ONLY//,/ }; do
        [[ " $KNOWN_STEPS " == *" $s "* ]] || { echo "gpu_check.sh: error: --steps: unknown step '$s' (known: ${KNOWN_STEPS// /, })" >&2; exit 2; }
      done ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: error: unknown argument '$1' (known: --tiny, --install-only, --steps LIST)" >&2; exit 2 ;;
  esac
  shift
done
wanted() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }

OUT="${OUT:-$ROOT/bench/out}"
WORK="${AK_GPU_WORK:-/tmp/ak-gpu-check}"
SITE="${AK_GPU_SITE:-/tmp/ak-gpu-site}"
# On the CPU machine the project's venv; on the GPU machine its python3 (torch 2.11, CUDA 13).
if [[ $TINY == 1 && -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="${PYTHON:-python3}"; fi
# Time budgets in seconds (GPU / --tiny on 2 CPU cores); the whole run stops at TOTAL.
if [[ $TINY == 1 ]]; then
  TOTAL=${AK_GPU_TOTAL_S:-5400}; B_INSTALL=600; B_ENV=300; B_PITFALLS=600; B_CORRECT=1800; B_DS=600; B_EVAL=900; B_RATE=300; B_TPUT=1200
else
  # From the first H100 run (2026-11-27): install 13 s, env 8 s, pitfalls >45 s, correctness >120 s,
  # deepspeed 44 s, eval >50 s, the 7B throughput runs ~60 s each (docs/gpu.md).
  # evalrate: a 7B bf16 model built in GPU memory (~10 s), 4 generation batches of 64 x 64 tokens, MMLU forwards.
  TOTAL=${AK_GPU_TOTAL_S:-480}; B_INSTALL=40; B_ENV=20; B_PITFALLS=80; B_CORRECT=170; B_DS=55; B_EVAL=80; B_RATE=90; B_TPUT=300
fi
START=$(date +%s)
mkdir -p "$OUT" "$WORK/logs"
LOG="$OUT/gpu_check.log"
: > "$LOG"
echo "{}" > "$WORK/status.json"
rm -f "$WORK"/step-*.json

log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

# Record a step's exit status and seconds in $WORK/status.json (read by the summary).
record() {
  "$PY" - "$WORK/status.json" "$1" "$2" "$3" "$4" <<'EOF'
import json, sys
path, name, rc, secs, budget = sys.argv[1:]
d = json.load(open(path))
d[name] = {"exit": int(rc), "seconds": int(secs), "budget_s": int(budget),
           "timed_out": int(rc) in (124, 137)}
json.dump(d, open(path, "w"), indent=1)
EOF
}

# run_step NAME BUDGET CMD...: under `timeout`, never past TOTAL; output to its own log, whose
# tail goes into $LOG (each file under $OUT must stay small: the device tool returns 8 files).
run_step() {
  local name=$1 budget=$2; shift 2
  local left=$(( TOTAL - ($(date +%s) - START) ))
  (( budget > left )) && budget=$left
  if (( budget < 10 )); then
    log "step $name: skipped, the ${TOTAL} s total is spent"
    record "$name" 124 0 0
    LAST_RC=124
    return
  fi
  log "step $name: start (budget ${budget} s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=15 "$budget" "$@" > "$WORK/logs/$name.log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  { echo "----- $name (exit $rc, ${secs} s; last 200 lines of $WORK/logs/$name.log) -----"
    tail -n 200 "$WORK/logs/$name.log"; } >> "$LOG"
  grep -E '^\[(pass|fail|skip)' "$WORK/logs/$name.log" || true
  log "step $name: exit $rc after ${secs} s$([[ $rc == 124 || $rc == 137 ]] && echo ' (TIMED OUT)')"
  record "$name" "$rc" "$secs" "$budget"
  LAST_RC=$rc
}
LAST_RC=0

# ---- install: the carried wheels (plain or xz-packed) into the private site folder ----
install_wheels() {
  local wheels="$WORK/wheels" sets
  sets=$(ls -d "$ROOT"/bench/gpu-wheels/set*/ 2>/dev/null)
  if [[ -z $sets ]]; then
    echo "no bench/gpu-wheels/set*/ carried: run bench/gpu_wheels.sh here and carry the set(s)"
    return 3
  fi
  rm -rf "$wheels"; mkdir -p "$wheels" "$SITE"
  "$PY" - "$wheels" $sets <<'EOF' || return 1
import lzma, shutil, sys
from pathlib import Path
out = Path(sys.argv[1])
for d in map(Path, sys.argv[2:]):
    for f in sorted(d.iterdir()):
        if f.name.endswith(".whl.xz"):
            with lzma.open(f) as src, open(out / f.name[:-3], "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        elif f.name.endswith(".whl"):
            shutil.copy(f, out / f.name)
print(f"{len(list(out.glob('*.whl')))} wheels from {', '.join(str(d) for d in sys.argv[2:])}")
EOF
  if [[ $TINY == 1 ]]; then
    # Rehearsal: the cp312 wheels into a scratch folder, as pip does on the GPU machine's Python
    # 3.12; the check itself then runs on this venv's packages.
    local plat=(); for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_28_x86_64 any; do plat+=(--platform "$p"); done
    rm -rf "$WORK/site-rehearsal"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --only-binary=:all: \
      --python-version 3.12 --implementation cp "${plat[@]}" --target "$WORK/site-rehearsal" "$wheels"/*.whl \
      2>&1 | grep -v "is ignored" ; local rc=${PIPESTATUS[0]}
    echo "installed $(ls -d "$WORK"/site-rehearsal/*.dist-info | wc -l) distributions into $WORK/site-rehearsal (rc $rc)"
    return $rc
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$wheels"/*.whl \
    2>&1 | grep -v "is ignored"; local rc=${PIPESTATUS[0]}
  echo "installed $(ls -d "$SITE"/*.dist-info | wc -l) distributions into $SITE (rc $rc)"
  return $rc
}

log "gpu_check: tiny=$TINY python=$PY out=$OUT work=$WORK site=$SITE total=${TOTAL}s"
export -f install_wheels
export ROOT WORK SITE PY TINY
run_step install "$B_INSTALL" bash -c install_wheels
if [[ $INSTALL_ONLY == 1 ]]; then log "install only: exit $LAST_RC"; exit "$LAST_RC"; fi

# The carried packages shadow the machine's (transformers 5.24 over 5.17); the repo after them.
if [[ $TINY == 1 ]]; then export PYTHONPATH="$ROOT"; else export PYTHONPATH="$SITE:$ROOT"; export AK_GPU_SITE="$SITE"; fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
export PYTHONUNBUFFERED=1
unset BNB_CUDA_VERSION  # bitsandbytes picks its library from torch.version.cuda (docs/gpu.md)
[[ $TINY == 1 ]] && export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

if command -v nvidia-smi >/dev/null; then
  { echo "----- nvidia-smi -----"; nvidia-smi; } >> "$LOG" 2>&1
fi
TINYFLAG=(); [[ $TINY == 1 ]] && TINYFLAG=(--tiny)
# The 7B-shaped model (random init on the GPU, 13.5 GB saved to disk) is built in the background
# while the tiny-model steps run; the throughput step waits for it.
BUILD_PID=""
if [[ $TINY == 0 ]] && wanted throughput; then
  timeout 240 "$PY" bench/gpu_qlora.py --build-only --layers 8 --out "$WORK/throughput" > "$WORK/logs/build-7b.log" 2>&1 &
  BUILD_PID=$!
fi
run_step env         "$B_ENV"      "$PY" bench/gpu_check.py env         --work "$WORK" "${TINYFLAG[@]}"
wanted pitfalls && run_step pitfalls    "$B_PITFALLS" "$PY" bench/gpu_check.py pitfalls    --work "$WORK" "${TINYFLAG[@]}"
wanted correctness && run_step correctness "$B_CORRECT"  "$PY" bench/gpu_check.py correctness --work "$WORK" "${TINYFLAG[@]}"
wanted deepspeed && run_step deepspeed   "$B_DS"       "$PY" bench/gpu_check.py deepspeed   --work "$WORK" "${TINYFLAG[@]}"
wanted eval && run_step eval        "$B_EVAL"     "$PY" bench/gpu_check.py eval        --work "$WORK" "${TINYFLAG[@]}"
# The eval job's rates per benchmark: the table plan's eval estimate reads (docs/gpu.md "Eval rates").
wanted evalrate && run_step evalrate "$B_RATE" "$PY" bench/gpu_evalrate.py "${TINYFLAG[@]}" --out "$OUT/eval_rates.json" \
  --markdown "$OUT/eval_rates.md" --check-json "$WORK/step-evalrate.json"
# Throughput last: the most expensive step gets what the others left (up to its own budget).
if [[ -n $BUILD_PID ]]; then
  wait "$BUILD_PID"; log "7B model build: exit $? ($(tail -n 1 "$WORK/logs/build-7b.log"))"
  { echo "----- build-7b -----"; tail -n 40 "$WORK/logs/build-7b.log"; } >> "$LOG"
fi
TPUT_LEFT=$(( TOTAL - ($(date +%s) - START) - 15 ))
# Like for like, then every lever alone (bench/gpu_qlora.py LEVERS); on the GPU the 7B widths with 8 of
# its 32 layers, so that the base pairs and the levers fit the step (docs/gpu.md "Throughput").
if [[ $TINY == 1 ]]; then TPUT_ARGS=(--tiny --steps 4 --warmup 1 --variants trl,alignkit,levers); else TPUT_ARGS=(--steps 5 --warmup 2 --layers 8 --variants trl,alignkit,levers); fi
wanted throughput && run_step throughput "$B_TPUT" "$PY" bench/gpu_qlora.py "${TPUT_ARGS[@]}" --out "$WORK/throughput" \
  --deadline "$(( TPUT_LEFT < B_TPUT ? TPUT_LEFT : B_TPUT ))" --check-json "$WORK/step-throughput.json"

WALL=$(( $(date +%s) - START ))
"$PY" bench/gpu_check.py summary --work "$WORK" "${TINYFLAG[@]}" --out "$OUT/gpu_check.json" --wall-s "$WALL" \
  | tee -a "$LOG"
RC=${PIPESTATUS[0]}
log "gpu_check: done in ${WALL} s; $OUT/gpu_check.json (exit $RC)"
exit "$RC"
