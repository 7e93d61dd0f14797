#!/usr/bin/env bash
# Install the Debian packages named as arguments that are not installed yet
# (apt-get update first; needs root when something is missing). The scripts
# in tools/ call it with what they need.
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0
echo "== installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
