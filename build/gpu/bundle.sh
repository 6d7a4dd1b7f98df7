#!/usr/bin/env bash
# Builds (here, with .NET) the bundle that build/gpu/run.sh runs on the GPU machine, which has no .NET
# but a PyTorch wheel (/opt/torch/.venv) whose torch/lib holds libtorch (CUDA). Deq.Tests, Deq.Cli (`deq`)
# and build/gpu/PaperTiming are published self-contained for linux-x64 WITHOUT libtorch: TorchSharp's
# glue (libLibTorchSharp.so, built against libtorch 2.10) is pointed at the wheel's libtorch through
# LD_LIBRARY_PATH, the route of ../shared/gpu-probe. The glue ships with its unused GLIBCXX_3.4.32 need
# weak (build/NativeCompat patched the NuGet copy it is published from). PTB travels along when found.
#
#   bash build/gpu/bundle.sh            # -> build/gpu/out/ (git-ignored), about 40 MiB
#   then, on the GPU machine: bash build/gpu/run.sh   (see the README's CUDA section)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT_DIR=${BUNDLE_DIR:-$HERE/out}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}

# Publish from a copy of the working tree (tracked and untracked, not ignored), so that the
# self-contained publish never touches this checkout's bin/ and obj/.
mkdir -p "$STAGE/src"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar -cf - --null --no-recursion --ignore-failed-read -T -) | tar -C "$STAGE/src" -xf -
commit=$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- . ':!build/gpu/out' || echo "+dirty")

publish() {  # project, folder under app/
  echo "publish $1 -> app/$2"
  dotnet publish "$STAGE/src/$1" -c Release -r linux-x64 --self-contained true -p:PublishTrimmed=false \
    -p:InvariantGlobalization=true -o "$STAGE/app/$2" >"$STAGE/publish-$2.log" 2>&1 || { tail -30 "$STAGE/publish-$2.log"; exit 1; }
}
publish Deq.Tests/Deq.Tests.fsproj tests
publish Deq.Cli/Deq.Cli.csproj cli
publish build/gpu/PaperTiming/PaperTiming.csproj timing

# Never ship a libtorch: drop exactly the files the libtorch-cpu package brings; the wheel provides them.
native=$(ls -d "$packages"/libtorch-cpu-linux-x64/*/runtimes/linux-x64/native | tail -1)
for f in "$native"/*; do rm -f "$STAGE"/app/*/"$(basename "$f")"; done
rm -f "$STAGE"/app/*/*.pdb
for d in "$STAGE"/app/*; do
  [ -f "$d/libLibTorchSharp.so" ] || { echo "FATAL: no libLibTorchSharp.so in $d"; exit 1; }
  needs=$(readelf -V --wide "$d/libLibTorchSharp.so")
  if ! grep -q 'Name: GLIBCXX_3.4.32  Flags: WEAK' <<<"$needs"; then
    echo "note: $(basename "$d")/libLibTorchSharp.so needs GLIBCXX_3.4.32 strongly (the build found it in this host's libstdc++" \
         "and left the glue alone); on a host that lacks it, Deq.Core's TorchRuntime.EnsureLoadable weakens it at start"
  fi
done

# The three apps share the .NET runtime and most assemblies: identical files become hard links,
# which tar stores once.
(cd "$STAGE/app" && find . -type f -print0 | xargs -0 sha256sum | sort |
  while read -r hash path; do
    if [ "$hash" = "${prev:-}" ]; then ln -f "$first" "$path"; else prev=$hash; first=$path; fi
  done)

data_src=${DEQ_DATA_DIR:-$REPO/../shared/data}
if [ -f "$data_src/ptb/ptb.train.txt" ]; then
  mkdir -p "$STAGE/data" && cp -r "$data_src/ptb" "$STAGE/data/"
else
  echo "note: no PTB under $data_src (set DEQ_DATA_DIR): the paper-scale timing will refuse to run"
fi
printf 'commit %s\nbuilt %s on %s\n' "$commit" "$(date -u +%FT%TZ)" "$(uname -srm)" > "$STAGE/MANIFEST"

rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR"
XZ_OPT=-6T2 tar -C "$STAGE" -cJf "$OUT_DIR/deq-gpu.tar.xz" MANIFEST app $( [ -d "$STAGE/data" ] && echo data )
cp "$HERE/elfsyms.py" "$OUT_DIR/"
du -sh "$OUT_DIR"/*
