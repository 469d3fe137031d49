#!/usr/bin/env bash
# Configures and builds Relay into ./build (binaries in build/bin). Extra args go to cmake.
# Compiles through ccache (CCACHE_DIR, by default build/ccache) with paths relative to the tree,
# so that tests/container/run.sh can hand its results to the image's build stage, which compiles
# the same sources with the same flags.
set -euo pipefail
cd "$(dirname "$0")/.."
"$(pwd)/scripts/install-deps.sh"
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_DIR=${CCACHE_DIR:-$(pwd)/build/ccache} CCACHE_BASEDIR=$(pwd) CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" "$@" >/dev/null
# ccache keys include the locale variables: the same ones as the image's build stage.
env -u LC_ALL -u LC_CTYPE -u LC_MESSAGES LANG=C.UTF-8 ninja -C build -j"$(nproc)"
