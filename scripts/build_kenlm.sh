#!/usr/bin/env bash
# Builds KenLM's lmplz, build_binary and filter from the pinned `kenlm` source distribution on PyPI
# into PREFIX/bin. This is the one recipe: `make setup` and the Dockerfile's build stage both call it.
#
#   scripts/build_kenlm.sh PREFIX          e.g. scripts/build_kenlm.sh tools/kenlm
#
# Needs: a Python with pip (PYTHON, default python3), cmake, a C++ compiler, and Debian's
# libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
# zlib1g-dev libbz2-dev liblzma-dev. Does nothing when PREFIX already holds this version's binaries.
set -euo pipefail

KENLM_VERSION=0.3.0
KENLM_SHA256=c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8
# DeepSpeech / Coqui STT compile their KenLM with KENLM_MAX_ORDER=6; binaries must not refuse what they load.
KENLM_MAX_ORDER=6
PROGRAMS=(lmplz build_binary filter)

if [[ $# -ne 1 ]]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
prefix=$1
python=${PYTHON:-python3}
stamp="$prefix/bin/.kenlm-version"
wanted="kenlm $KENLM_VERSION max_order $KENLM_MAX_ORDER"

installed() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] || return 1
    local program
    for program in "${PROGRAMS[@]}"; do
        [[ -x "$prefix/bin/$program" ]] || return 1
    done
}

if installed; then
    echo "KenLM $KENLM_VERSION already built in $prefix/bin"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/build-kenlm.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "Downloading the kenlm $KENLM_VERSION source distribution"
"$python" -m pip download --quiet --no-deps --no-binary :all: --dest "$work" "kenlm==$KENLM_VERSION"
archive="$work/kenlm-$KENLM_VERSION.tar.gz"
echo "$KENLM_SHA256  $archive" | sha256sum --check --quiet -

tar -xzf "$archive" -C "$work"
source_dir="$work/kenlm-$KENLM_VERSION"
build_dir="$work/build"

# zlib/bzip2/xz are optional to KenLM's cmake; the project wants compressed input support, so insist on them.
cmake -S "$source_dir" -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DKENLM_MAX_ORDER="$KENLM_MAX_ORDER" \
    -DCOMPILE_TESTS=OFF \
    -DENABLE_PYTHON=OFF \
    > "$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
for library in ZLIB BZip2 LibLZMA; do
    grep -q "Found $library" "$work/cmake.log" \
        || { echo "cmake did not find $library; install its Debian -dev package" >&2; exit 1; }
done

echo "Compiling ${PROGRAMS[*]}"
cmake --build "$build_dir" --parallel "$(nproc)" --target "${PROGRAMS[@]}" > "$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; exit 1; }

# Install next to the final place, then rename, so an interrupted run never leaves a partial PREFIX/bin.
mkdir -p "$prefix"
staging=$(mktemp -d "$prefix/.bin.XXXXXX")
chmod 0755 "$staging"
for program in "${PROGRAMS[@]}"; do
    install -m 0755 "$build_dir/bin/$program" "$staging/$program"
done
echo "$wanted" > "$staging/.kenlm-version"
rm -rf "$prefix/bin"
mv "$staging" "$prefix/bin"
echo "KenLM $KENLM_VERSION built into $prefix/bin: ${PROGRAMS[*]}"
