#!/usr/bin/env bash
# On the GPU machine (no .NET; PyTorch wheel in /opt/torch/.venv): runs the bundle of build/gpu/bundle.sh.
#   bash build/gpu/run.sh [BUNDLE_DIR]      (default build/gpu/out); everything goes to $OUT (default ./gpu-out)
# Stages (STAGES="load tests bench paper" by default; name a subset to rerun one):
#   load   TorchSharp's glue against the wheel's libtorch: missing symbols, ldd, CUDA availability
#   tests  the solver and implicit-gradient tests with DEQ_TEST_DEVICE=cuda (float64, each result also on the CPU)
#   bench  deq bench --quick (its benchmarks are CPU-only by design: they measure this host's CPU)
#   paper  Table 2's paper-scale DEQ-TrellisNet (24M, PTB) for PAPER_STEPS steps on CUDA, ms/step per phase
# GPU memory: TorchSharp 0.107 binds no CUDA allocator statistics, so each stage samples nvidia-smi's
# memory.used every 100 ms; the peak includes the CUDA context and the caching allocator's reserve.
# About 4-5 minutes expected, at most 7.5 (the stage timeouts below); summary in $OUT/summary.md.
# Local check of the CPU path: TORCH_LIB_DIR=<a CPU libtorch's lib dir> DEVICE=cpu bash build/gpu/run.sh
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
B=$(cd "${1:-$HERE/out}" && pwd) || exit 10
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
STAGES=${STAGES:-load tests bench paper}
DEVICE=${DEVICE:-cuda}
PAPER_STEPS=${PAPER_STEPS:-300}; PAPER_PRETRAIN=${PAPER_PRETRAIN:-50}; PAPER_SECONDS=${PAPER_SECONDS:-120}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
exec > >(tee -a "$OUT/run.log") 2>&1
say() { printf '\n=== %s\n' "$*"; }
summary=$OUT/summary.md
printf '| stage | rc | seconds | nvidia-smi peak memory.used (MiB) |\n|---|---|---|---|\n' > "$summary"

say host; uname -srm; grep PRETTY /etc/os-release; ldd --version | head -1; nproc
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
if [ -z "${TORCH_LIB_DIR:-}" ]; then
  TORCH_LIB_DIR=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/torch/lib 2>/dev/null | head -1)
  [ -n "$TORCH_LIB_DIR" ] || { echo "FATAL: no torch/lib under /opt/torch/.venv (set TORCH_LIB_DIR)"; exit 10; }
fi
L=$TORCH_LIB_DIR; echo "TORCH_LIB_DIR=$L"
cat "$L/../version.py" 2>/dev/null | grep -E "^(__version__|cuda)" || true
# The wheel's CUDA runtime libraries (nvidia/*/lib), as torch's own RUNPATH finds them.
NV=$(find "$L/../.." -maxdepth 4 -path '*nvidia*' -type d -name lib 2>/dev/null | paste -sd: -)
export LD_LIBRARY_PATH=$L${NV:+:$NV}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NUGET_PACKAGES=/nonexistent DOTNET_CLI_TELEMETRY_OPTOUT=1
PY=$(command -v /opt/torch/.venv/bin/python3 || command -v python3 || true)

tar -C "$W" -xJf "$B/deq-gpu.tar.xz" || { echo "FATAL: cannot unpack $B/deq-gpu.tar.xz"; exit 10; }
cat "$W/MANIFEST"; A=$W/app

idle=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
echo "nvidia-smi memory.used before any stage: ${idle:--} MiB"
printf 'nvidia-smi memory.used before any stage: %s MiB\n\n' "${idle:--}" >> "$OUT/summary-head.md"
stage() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
  say "$name: $*"
  local sampler=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/nvsmi-$name.csv" 2>/dev/null &
    sampler=$!
  fi
  local t0=$SECONDS
  # timeout signals the whole process group, so a stuck test or trainer dies with its stage.
  timeout -k 10 "$limit" bash -c '"$@"' _ "$@"; local rc=$?
  local dt=$((SECONDS - t0)) peak="-"
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    peak=$(sort -n "$OUT/nvsmi-$name.csv" | tail -1)
  fi
  [ "$rc" = 124 ] && echo "!! $name: timed out after $limit s"
  echo "$name: rc=$rc in ${dt}s, nvidia-smi peak ${peak:--} MiB"
  printf '| %s | %s | %s | %s |\n' "$name" "$rc" "$dt" "${peak:--}" >> "$summary"
  eval "rc_$name=$rc"
}

load() {
  local glue=$A/tests/libLibTorchSharp.so
  echo "libstdc++: $(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')"
  if [ -n "$PY" ]; then
    "$PY" "$B/elfsyms.py" "$glue" $(ls "$L"/lib{torch,torch_cpu,torch_cuda,c10,c10_cuda}.so "$L"/libgomp*.so* 2>/dev/null) > "$OUT/missing-symbols.txt" 2>&1
    head -1 "$OUT/missing-symbols.txt"; grep MISSING "$OUT/missing-symbols.txt" | cut -c1-200 | head -40
  fi
  ldd "$glue" > "$OUT/ldd.txt" 2>&1; grep -E 'not found|torch|c10' "$OUT/ldd.txt"
  # Deq.Tests checks DEQ_TEST_DEVICE before listing: rc 0 means the glue loaded and the device is usable.
  DEQ_TEST_DEVICE=$DEVICE "$A/tests/Deq.Tests" --list-tests > "$OUT/test-names.txt"; local rc=$?
  if [ "$rc" != 0 ]; then
    echo "!! $DEVICE is not usable (rc $rc); loader errors:"
    LD_DEBUG=files,versions DEQ_TEST_DEVICE=$DEVICE "$A/tests/Deq.Tests" --list-tests > "$OUT/ld-debug.txt" 2>&1
    grep -E 'lookup error|cannot open shared|undefined symbol' "$OUT/ld-debug.txt" | grep -vE 'DllMain|PAL_Register' | sort -u | head -20
    # dlopen with RTLD_NOW names the first library or symbol that does not resolve.
    [ -n "$PY" ] && for lib in "$L/libtorch_cuda.so" "$glue"; do
      "$PY" -c 'import ctypes,sys; ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL); print("dlopen OK:", sys.argv[1])' "$lib" 2>&1 | tail -1
    done
  fi
  return "$rc"
}

tests() {
  # Every test of the solver and implicit-gradient lists (Expecto's --run takes full names;
  # --list-tests prints one per line, the first after its log prefix, each after its state
  # letter "N " when some test is pending, as those needing ../shared/data are there).
  DEQ_TEST_DEVICE=cpu "$A/tests/Deq.Tests" --list-tests |
    sed -nE 's/^(.*[[:space:]])?((solvers reach|solver contracts|solver combinators|solvers hold|Broyden and Anderson|implicit gradient\.|failed backward solves|backward robustness|forward plus backward).*)$/\2/p' \
    > "$W/selected.txt"
  echo "$(wc -l < "$W/selected.txt") tests, DEQ_TEST_DEVICE=$DEVICE"
  mapfile -t names < "$W/selected.txt"
  [ "${#names[@]}" -gt 0 ] || { echo "!! no solver or implicit-gradient tests listed (see the list above)"; return 3; }
  DEQ_TEST_DEVICE=$DEVICE "$A/tests/Deq.Tests" --run "${names[@]}" --summary 2>&1 | tee "$OUT/tests.txt" | grep -vE '^\s*$' | tail -25
  return "${PIPESTATUS[0]}"
}

bench() {
  DEQ_CLI_PATH=$A/cli/deq "$A/cli/deq" bench --quick --out "$OUT/benchmarks.json"
}

paper() {
  DEQ_DEVICE=$DEVICE DEQ_DATA_DIR=$W/data "$A/timing/deq-paper-timing" --scale "${PAPER_SCALE:-paper}" \
    --steps "$PAPER_STEPS" --pretrain "$PAPER_PRETRAIN" --max-seconds "$PAPER_SECONDS" --json "$OUT/paper-timing.json" |
    tee "$OUT/paper-timing.txt"
  return "${PIPESTATUS[0]}"
}

export -f load tests bench paper
export A B L OUT W PY DEVICE PAPER_STEPS PAPER_PRETRAIN PAPER_SECONDS
stage load 60 load
if [ "${rc_load:-0}" != 0 ] && [ "$DEVICE" != cpu ]; then
  echo "!! $DEVICE did not load: the tests run on the CPU against the wheel's libtorch instead, the paper stage is skipped"
  DEVICE=cpu; STAGES=${STAGES/paper/}; export DEVICE
fi
stage tests 120 tests
stage bench 100 bench
stage paper $((PAPER_SECONDS + 50)) paper
{ echo; grep -hE '^[0-9]+ passed' "$OUT/tests.txt" 2>/dev/null | sed 's/^/tests: /'
  grep -hE '^DEQ-TrellisNet|^  (unrolled|DEQ|stopped|test ppl)' "$OUT/paper-timing.txt" 2>/dev/null; } >> "$summary"
[ -f "$OUT/summary-head.md" ] && { cat "$OUT/summary-head.md" "$summary" > "$summary.tmp" && mv "$summary.tmp" "$summary"; rm -f "$OUT/summary-head.md"; }
say summary; cat "$summary"
worst=0; for s in load tests bench paper; do v=$(eval echo "\${rc_$s:-0}"); [ "$v" != 0 ] && worst=$v; done
echo "FINAL rc=$worst"; exit "$worst"
