#!/usr/bin/env bash
# attnkit on this machine's GPU in one command: points Dawn (npm `webgpu` 0.6.2) at the NVIDIA
# Vulkan driver, prints the adapter, runs the webgpu conformance suite and the GPU part of the bench
# (`attnkit-bench --mode gpu`, apps/bench/src/gpu-check.ts), and writes one JSON file.
#
#   bash scripts/gpu-check.sh [output.json]     # default bench-results/gpu-check.json
#
# Installs nothing beyond the workspace's npm packages (from the lockfile, offline, only when they
# are missing). Needs Node >= 20.19 and a Vulkan loader (libvulkan.so.1); on a bare machine with the
# NVIDIA driver but no loader, bring Debian's libvulkan1 (root README, "A real GPU in one command").
# Budgeted to finish in under 8 minutes; a part that runs out of time says so in the JSON.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-$root/bench-results/gpu-check.json}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
say() { echo "gpu-check: $*"; }

command -v node >/dev/null || { say "node is not installed (Node >= 20.19 needed)"; exit 2; }
say "node $(node --version) on $(uname -srm)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu-check: nvidia-smi: /' || true
else
  say "nvidia-smi not found (no NVIDIA driver tools on PATH)"
fi

# The workspace: installed and built, or installed from the lockfile and built now.
built=yes
for f in node_modules/.modules.yaml apps/bench/dist/cli.js apps/bench/dist/gpu-check.js \
  packages/conformance/dist/cli.js packages/webgpu/dist/index.js packages/webgpu/node_modules/webgpu/package.json; do
  [ -e "$f" ] || built=no
done
if [ "$built" = no ]; then
  pnpm=(pnpm)
  command -v pnpm >/dev/null || pnpm=(corepack pnpm)
  say "workspace not installed or not built: running ${pnpm[*]} install --frozen-lockfile --offline && ${pnpm[*]} run build"
  "${pnpm[@]}" install --frozen-lockfile --offline
  "${pnpm[@]}" run build
else
  say "workspace already installed and built (nothing installed)"
fi

# The Vulkan driver: the NVIDIA ICD manifest where drivers put it, unless the caller chose one.
# (/usr/local/nvidia/...: where container images that mount the host's driver put it)
icd_dirs=(/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/etc/vulkan/icd.d
  /usr/lib/x86_64-linux-gnu/vulkan/icd.d /opt/nvidia/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d
  /usr/local/nvidia/etc/vulkan/icd.d)
found=()
for d in "${icd_dirs[@]}"; do
  for f in "$d"/*.json; do [ -e "$f" ] && found+=("$f"); done
done
[ -e /usr/lib/chromium/vk_swiftshader_icd.json ] && found+=(/usr/lib/chromium/vk_swiftshader_icd.json)
say "Vulkan ICD manifests found: ${found[*]:-none}"
if [ -n "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
  say "using the caller's VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-} VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  choice="caller"
else
  nvidia=""
  for f in "${found[@]}"; do
    case "$(basename "$f")" in nvidia_icd*.json) nvidia="$f"; break ;; esac
  done
  if [ -n "$nvidia" ]; then
    choice="$nvidia"
    say "NVIDIA ICD: $nvidia"
  elif [ -e /usr/lib/chromium/vk_swiftshader_icd.json ]; then
    choice=/usr/lib/chromium/vk_swiftshader_icd.json
    say "no nvidia_icd.json in ${icd_dirs[*]}: falling back to SwiftShader (a software adapter: correctness only)"
  else
    choice=""
    say "no nvidia_icd.json and no SwiftShader: leaving the Vulkan loader to its defaults"
  fi
  if [ -n "$choice" ]; then
    export VK_ICD_FILENAMES="$choice" VK_DRIVER_FILES="$choice"
  fi
fi
export ATTNKIT_GPU_CHECK_ICD_SEARCH="found: ${found[*]:-none}; used: ${choice:-loader default}"

# The loader: libvulkan.so.1 from the system, else the copy in Debian's chromium directory.
if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  say "Vulkan loader: $(ldconfig -p | grep -m1 'libvulkan\.so\.1' | sed 's/.*=> //')"
elif [ -e /usr/lib/chromium/libvulkan.so.1 ]; then
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/lib/chromium"
  say "Vulkan loader: /usr/lib/chromium/libvulkan.so.1 (LD_LIBRARY_PATH)"
else
  say "no libvulkan.so.1 found: Dawn will see no adapter. Bring Debian's libvulkan1:"
  say "  apt-get download libvulkan1 && dpkg -x libvulkan1_*.deb / && ldconfig   (on a machine with apt)"
fi

mkdir -p "$(dirname "$out")"
name="$(basename "$out" .json)"
# The run budgets itself (8 minutes); the guard only stops a hang.
status=0
timeout --signal=KILL 470 node apps/bench/dist/cli.js --mode gpu --output "$(dirname "$out")" --name "$name" || status=$?
if [ "$status" -eq 137 ]; then say "stopped by the 470 s guard"; fi
[ -e "$out" ] && say "wrote $out"
exit "$status"
