#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs, for a machine that has an NVIDIA GPU and its driver but no
# Node, no npm registry and no Vulkan loader (the lent device machines: no network at all).
#
#   bash scripts/gpu-pack.sh [out-dir]          # default .gpu-pack (ignored by git)
#
# Run it here, on a built workspace (`pnpm install && pnpm run build`). It writes:
#   node.xz            this machine's Node binary (gpu-check needs Node >= 20.19)
#   workspace.tar.xz   every built dist, and from node_modules only the files a gpu-check run opens
#   debs/*.deb         Debian's Vulkan loader and the libglvnd libraries NVIDIA's ICD links against
#   check.sh           unpacks all of it on the target and runs scripts/gpu-check.sh
# On the target, from a copy of this repository's tree with out-dir in it:
#   bash .gpu-pack/check.sh OUTPUT.json
#
# Why a trace and not whole packages: `webgpu` (Dawn for every platform) and `onnxruntime-web` (every
# wasm variant) are 130-140 MB each on disk; the files one run opens are about 40 MB before xz. The
# file list comes from running gpu-check.sh itself under strace on SwiftShader, so it follows the
# script as it changes. The dists go in whole, so a path taken only on hardware (bigger sizes, the
# subgroup kernels) finds its modules too. Needs strace, xz and a SwiftShader-capable Vulkan here.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-$root/.gpu-pack}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
say() { echo "gpu-pack: $*"; }
die() { say "$*"; exit 2; }

for tool in strace xz tar node; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install -y $tool)"
done
for f in apps/bench/dist/cli.js packages/conformance/dist/cli.js packages/webgpu/dist/index.js; do
  [ -e "$f" ] || die "$f is missing: run pnpm install && pnpm run build first"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out/debs"

# 1. The files a run opens: gpu-check.sh under strace, following every child (the conformance CLI, the
# onnxruntime child). %file covers open/stat/access/readlink/execve, so `[ -e f ]` tests count too.
say "tracing bash scripts/gpu-check.sh on this machine's adapter (SwiftShader here: a few minutes)"
if ! strace -f -qq -e trace=%file -e status=successful -o "$tmp/trace.log" \
  bash scripts/gpu-check.sh "$tmp/trace-check.json" >"$tmp/trace-run.log" 2>&1; then
  tail -20 "$tmp/trace-run.log"
  die "the traced gpu-check run failed: fix that first (its log is above)"
fi
grep -m1 '^adapter:' "$tmp/trace-run.log" | sed 's/^/gpu-pack: traced run: /' || true

# Paths from the trace: every quoted path argument of a successful call, relative ones taken against
# the repository root (gpu-check.sh and its children run there), kept when they are regular files
# inside the repository. `realpath -e` resolves pnpm's symlinks to the files they point at.
grep -o '"[^"]*"' "$tmp/trace.log" | tr -d '"' | sort -u >"$tmp/paths.txt"
: >"$tmp/files.txt"
while IFS= read -r p; do
  case "$p" in /*) abs="$p" ;; *) abs="$root/$p" ;; esac
  real="$(realpath -e -- "$abs" 2>/dev/null)" || continue
  [ -f "$real" ] || continue
  case "$real" in "$root"/.git/* | "$root"/.gpu-pack/*) continue ;; "$root"/*) ;; *) continue ;; esac
  echo "${real#"$root"/}" >>"$tmp/files.txt"
done <"$tmp/paths.txt"
traced="$(wc -l <"$tmp/files.txt")"

# 2. What the trace cannot see: every built dist whole, the scripts, the package manifests (Node
# reads `type` and `exports` from them), and every symlink under node_modules (pnpm's layout: links
# cost nothing and a missing one breaks resolution).
{
  cat "$tmp/files.txt"
  git ls-files -- scripts 'package.json' '*/package.json' 'pnpm-workspace.yaml'
  find packages apps benchmarks examples -path '*/node_modules' -prune -o -type d -name dist -print |
    while IFS= read -r d; do find "$d" -type f; done
  find . -path ./.git -prune -o -path ./.gpu-pack -prune -o -type l -path '*node_modules*' -print | sed 's#^\./##'
  echo node_modules/.modules.yaml
} | sort -u >"$tmp/pack.txt"
say "$traced files from the trace, $(wc -l <"$tmp/pack.txt") paths in all"

tar -C "$root" --no-recursion -cf - -T "$tmp/pack.txt" | xz -T0 -3 >"$out/workspace.tar.xz"
node_bin="$(realpath -e "$(command -v node)")"
xz -T0 -3 <"$node_bin" >"$out/node.xz"
say "node $(node --version) from $node_bin"

# 3. The Vulkan loader and glvnd (NVIDIA's ICD, libGLX_nvidia.so.0, links libGLdispatch from it):
# Debian's packages, fetched with apt where apt works. A machine that has them ignores them.
debs=(libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libgles2 libopengl0)
if command -v apt-get >/dev/null && (cd "$out/debs" && apt-get download "${debs[@]}" >"$tmp/apt.log" 2>&1); then
  say "debs: $(cd "$out/debs" && ls ./*.deb | tr '\n' ' ')"
elif ls "$out/debs"/*.deb >/dev/null 2>&1; then
  say "apt-get download failed; keeping the debs already in $out/debs"
else
  say "apt-get download failed and $out/debs is empty: the target must have libvulkan.so.1 itself"
fi

cat >"$out/check.sh" <<'CHECK'
#!/usr/bin/env bash
# Written by scripts/gpu-pack.sh: unpack Node, the workspace and the Vulkan debs, then run
# scripts/gpu-check.sh. Run from the repository root: bash .gpu-pack/check.sh OUTPUT.json
set -euo pipefail
pack="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$pack/.." && pwd)"
cd "$root"
if [ "$(id -u)" = 0 ]; then
  for deb in "$pack"/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" /; done
  ldconfig
fi
bin="$(mktemp -d)"
xz -dc "$pack/node.xz" >"$bin/node"
chmod +x "$bin/node"
export PATH="$bin:$PATH"
tar -xJf "$pack/workspace.tar.xz"
bash scripts/gpu-check.sh "${1:-$root/bench-results/gpu-check.json}"
CHECK
chmod +x "$out/check.sh"
say "wrote $out: $(du -sh "$out" | cut -f1) ($(du -sh "$out/workspace.tar.xz" | cut -f1) workspace, $(du -sh "$out/node.xz" | cut -f1) node)"
