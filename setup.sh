#!/usr/bin/env bash
# Sets up spzoo on a fresh machine: the Debian packages of the offline
# datasets and tools (debian-packages.txt), then spzoo itself with its Python
# dependencies (pyproject.toml), the test tools and the npm packages of the
# zoo site (package.json). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

packages=$(grep -vE '^\s*(#|$)' debian-packages.txt | tr '\n' ' ')
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PYTHON=${PYTHON:-python3}
echo "setup: installing spzoo and its Python dependencies"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
nodeps=$(grep -vE '^\s*(#|$)' pip-nodeps.txt | tr '\n' ' ')
if [ -n "$nodeps" ]; then
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps $nodeps
fi
# onnxruntime-web (package.json) into node_modules/: `spzoo zoo site` copies
# its WebAssembly build into the site, for the in-browser demo.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing npm (Debian)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
echo "setup: installing onnxruntime-web (npm)"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
echo "setup: done"
