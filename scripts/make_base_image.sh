#!/usr/bin/env bash
# Makes a Debian bookworm image with python3, venv and pip from the Debian mirror, for machines that can reach
# Debian but no container registry; pass it to the build as PYTHON_IMAGE.
#
#   scripts/make_base_image.sh [IMAGE]          default IMAGE: local/python:3.11-bookworm
#
# Needs root, debootstrap and a running docker engine. DEBIAN_MIRROR overrides http://deb.debian.org/debian.
set -euo pipefail

image=${1:-local/python:3.11-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

root=$(mktemp -d "${TMPDIR:-/tmp}/base-image.XXXXXX")
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm into $root"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$root" "$mirror" \
    > "$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# The same suites as the official images, so that apt-get in the build also gets the security updates.
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import --change 'CMD ["python3"]' - "$image" > /dev/null
echo "base image $image: $("$docker" run --rm "$image" python3 --version)"
