#!/usr/bin/env bash
# Installs everything attnkit needs on a fresh Debian/Ubuntu machine, then installs and builds the
# workspace. Safe to run twice. System packages need root (or sudo); without either it says what to
# install and goes on with the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

# rustc + wasm32 std + lld: builds @attnkit/wasm. chromium: headless browser tests (WebGL, WebGPU,
# wasm in a page) and Dawn's SwiftShader Vulkan driver for WebGPU in Node. xvfb/xauth: a display for
# the browser tests where one is needed. libvulkan1: the Vulkan loader Dawn uses with SwiftShader.
APT_PACKAGES=(rustc libstd-rust-dev-wasm32 lld chromium xvfb xauth libvulkan1)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    echo "setup: please install these Debian packages as root: ${missing[*]}" >&2
  else
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

want_pnpm=$(node -p "require('./package.json').packageManager.split('@')[1]")
if ! command -v pnpm >/dev/null || [ "$(pnpm --version)" != "$want_pnpm" ]; then
  echo "setup: installing pnpm $want_pnpm"
  npm install -g "pnpm@$want_pnpm" >/dev/null 2>&1 || corepack enable pnpm
fi

pnpm install --frozen-lockfile
pnpm run build
