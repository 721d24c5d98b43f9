#!/usr/bin/env bash
# Sets up spzoo on a fresh machine: the Debian packages of the offline
# datasets (debian-packages.txt), then spzoo itself with its Python
# dependencies (pyproject.toml) and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

packages=$(grep -vE '^\s*(#|$)' debian-packages.txt | tr '\n' ' ')
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
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
echo "setup: done"
