#!/usr/bin/env bash
# Installs the Debian packages tfkd's demo and tests use, when running as root with apt.
# Elsewhere it does nothing: the data loader then looks in $TFKD_DATA_DIR, the Keras cache, or
# downloads, and tests that need a missing package say so.
set -u
PACKAGES=(dataset-fashion-mnist openssh-server adb)

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    exit 0
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
# A fresh machine has empty package lists: update only when apt cannot find a package.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null || true
fi
apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "warning: could not install ${missing[*]} with apt-get" >&2
exit 0
