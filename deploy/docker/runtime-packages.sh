#!/bin/bash
# Prints the Debian packages that own the shared libraries the given binaries load (the runtime
# stage installs exactly these, so the list cannot drift from what the build links).
set -euo pipefail
for lib in $(ldd "$@" | awk '/=> \//{print $3}' | sort -u); do
  real=$(readlink -f "$lib")
  # usrmerge: dpkg may know the file under /lib or /usr/lib.
  for candidate in "$lib" "$real" "${lib#/usr}" "${real#/usr}" "/usr$lib" "/usr$real"; do
    if pkg=$(dpkg -S "$candidate" 2>/dev/null); then
      echo "${pkg%%:*}"
      continue 2
    fi
  done
  echo "runtime-packages: no package owns $lib" >&2
  exit 1
done | sort -u
