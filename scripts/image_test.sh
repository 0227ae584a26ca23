#!/usr/bin/env bash
# `make image-test`: builds the training image and runs `make train` in it the way a user runs it: the data folder
# mounted, as uid 999, with no network and a read-only root file system (only /mnt, /tmp and $HOME writable), on a
# small corpus spoken inside the image. First it checks that a data folder the user cannot write stops with exit 2.
#
#   scripts/image_test.sh
#
#   PYTHON_IMAGE  base image (default local/python:3.11-bookworm, made by scripts/make_base_image.sh when missing)
#   TENSORFLOW    the build's TensorFlow requirement (default tensorflow==2.21.0: CPU only, a smaller image)
#   IMAGE         tag of the image built (default deepspeech-it:image-test)
#
# Exit status: 0 passed, 1 the image is broken, 77 skipped because this machine cannot build or run images (the
# reason is printed): no docker engine, not root, no base image and no way to make one.
set -euo pipefail
cd "$(dirname "$0")/.."

SKIPPED=77
base=${PYTHON_IMAGE:-local/python:3.11-bookworm}
image=${IMAGE:-deepspeech-it:image-test}
tensorflow=${TENSORFLOW:-tensorflow==2.21.0}
tiny=(-e N_HIDDEN=64 -e EPOCHS=1 -e BATCH_SIZE=4 -e EARLY_STOP=0 -e LM_ORDER=3 -e LM_PRUNE=0 -e BEAM_WIDTH=16
      -e PROGRESS=0)
as_a_user=(--rm --network none --user 999:999 --read-only --tmpfs /tmp --tmpfs /home/trainer:mode=1777)

skip() { echo "image test skipped: $*"; exit "$SKIPPED"; }
fail() { echo "image test FAILED: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/image-test.XXXXXX")
dockerd_pid=
cleanup() {
    rm -rf "$work"
    if [[ -n $dockerd_pid ]]; then
        kill "$dockerd_pid" && wait "$dockerd_pid" || true
    fi
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || skip "needs root (to give the data folder to uid 999, and to start dockerd if needed)"
command -v docker > /dev/null || skip "no docker client (Debian: apt-get install docker.io)"

# A docker client that speaks BuildKit (needed for the build's secrets): a recent client with the buildx plugin, or
# an older one with BuildKit built in; PATH may hold either first.
pick_client() {
    local candidate
    for candidate in $(type -ap docker); do
        if printf 'FROM %s\n' "$base" | DOCKER_BUILDKIT=1 "$candidate" build -q - > /dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
}

if ! docker info > /dev/null 2>&1; then
    command -v dockerd > /dev/null || skip "no docker engine running and no dockerd to start"
    echo "starting dockerd for the test"
    dockerd > "$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do
        docker info > /dev/null 2>&1 && break
        sleep 1
    done
    docker info > /dev/null 2>&1 || { tail -n 5 "$work/dockerd.log"; skip "dockerd did not start"; }
fi

if ! docker image inspect "$base" > /dev/null 2>&1; then
    if [[ -z ${PYTHON_IMAGE:-} ]]; then
        command -v debootstrap > /dev/null || skip "no base image $base and no debootstrap to make one"
        scripts/make_base_image.sh "$base" || skip "could not make the base image (is the Debian mirror reachable?)"
    else
        docker pull "$base" || skip "base image $base not available"
    fi
fi
client=$(pick_client)
[[ -n $client ]] || skip "no docker client with BuildKit (install docker-buildx, or Debian's docker.io client)"

python=.venv/bin/python
[[ -x $python ]] || python=python3
"$python" scripts/pip_build_config.py "$work"

echo "building $image from $base with $tensorflow"
started=$SECONDS
DOCKER_BUILDKIT=1 "$client" build -f docker/Dockerfile.train.it -t "$image" \
    --build-arg PYTHON_IMAGE="$base" --build-arg tensorflow="$tensorflow" \
    --secret id=pipconf,src="$work/pip.conf" --secret id=pipca,src="$work/ca.pem" . > "$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; fail "the image does not build"; }
echo "image built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
docker run --rm "$image" sh -c '[ -z "$(ls -A /run/secrets 2> /dev/null)" ]' || fail "build secrets left in the image"

# A data folder the container's user cannot write: one line that says what to do, exit 2, before any work.
mkdir "$work/not-yours"
set +e
refused=$(docker run "${as_a_user[@]}" -v "$work/not-yours:/mnt" "$image" .venv/bin/python scripts/01_check_sources.py 2>&1)
code=$?
set -e
[[ $code == 2 && $refused == *"chown"* && $(wc -l <<< "$refused") == 1 ]] \
    || fail "a data folder owned by root gave exit $code and: $refused"
echo "data folder owned by another user: exit 2, $refused"

data="$work/data"
mkdir -p "$data/sources"
chown -R 999:999 "$data"
docker run "${as_a_user[@]}" -v "$data:/mnt" "$image" .venv/bin/python -c \
    'from pathlib import Path; from deepspeech_it.demo.synth import build_archive; build_archive(Path("/mnt/sources/it.tar.gz"))' \
    || fail "the image cannot speak the test corpus"
sha256=$(sha256sum < "$data/sources/it.tar.gz" | cut -c1-64)

echo "make train in the image: uid 999, no network, read-only root file system"
started=$SECONDS
docker run "${as_a_user[@]}" -v "$data:/mnt" -e CV_SHA256="$sha256" "${tiny[@]}" "$image" > "$work/train.log" 2>&1 \
    || { tail -n 40 "$work/train.log" >&2; fail "make train failed in the image"; }
echo "make train done in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
grep -q '^stage 06 done' "$work/train.log" || fail "stage 06 did not run"
for client_name in "deepspeech-tflite 0.9.3" "stt 1.4.0"; do
    grep -q "\"$client_name\"" "$data/models/metadata.json" || fail "the release was not verified with $client_name"
done
echo "image test passed: $image runs make train as uid 999 without network; both clients loaded the release"
