#!/usr/bin/env bash
# Builds KenLM from the pinned `kenlm` source distribution on PyPI, and the project's CTC beam-search decoder,
# which links KenLM's library:
#   PREFIX/bin                         lmplz, build_binary, filter
#   PREFIX/lib, PREFIX/include         KenLM's static libraries and headers, built position-independent
#   PREFIX/lib/libctc_beam_search.so   deepspeech_it/decode/ctc_beam_search.cc, loaded by deepspeech_it/decode/ctc.py
# This is the one recipe: `make setup` and the Dockerfile's build stage both call it.
#
#   scripts/build_kenlm.sh PREFIX          e.g. scripts/build_kenlm.sh tools/kenlm
#
# Needs: a Python with pip (PYTHON, default python3), cmake, a C++ compiler, and Debian's
# libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
# zlib1g-dev libbz2-dev liblzma-dev. KenLM is built once per version; the decoder again whenever its source
# changes.
set -euo pipefail

KENLM_VERSION=0.3.0
KENLM_SHA256=c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8
# DeepSpeech / Coqui STT compile their KenLM with KENLM_MAX_ORDER=6; binaries must not refuse what they load.
KENLM_MAX_ORDER=6
PROGRAMS=(lmplz build_binary filter)
LIBRARIES=(libkenlm.a libkenlm_util.a)
DECODER_SOURCE="$(cd "$(dirname "$0")/.." && pwd)/deepspeech_it/decode/ctc_beam_search.cc"
DECODER=libctc_beam_search.so

if [[ $# -ne 1 ]]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
python=${PYTHON:-python3}
stamp="$prefix/bin/.kenlm-version"
wanted="kenlm $KENLM_VERSION max_order $KENLM_MAX_ORDER"

kenlm_installed() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -f "$prefix/include/lm/model.hh" ]] || return 1
    local file
    for file in "${PROGRAMS[@]}"; do
        [[ -x "$prefix/bin/$file" ]] || return 1
    done
    for file in "${LIBRARIES[@]}"; do
        [[ -f "$prefix/lib/$file" ]] || return 1
    done
}

build_decoder() {
    local wanted_decoder decoder_stamp="$prefix/lib/.decoder-version" flags=(-std=c++17 -O2 -fPIC -shared
        -DKENLM_MAX_ORDER="$KENLM_MAX_ORDER" -Wall -Wextra -Werror)
    wanted_decoder="$(sha256sum < "$DECODER_SOURCE" | cut -d' ' -f1) ${flags[*]}"
    if [[ -f "$decoder_stamp" && -f "$prefix/lib/$DECODER" && "$(cat "$decoder_stamp")" == "$wanted_decoder" ]]; then
        echo "CTC decoder already built in $prefix/lib"
        return
    fi
    echo "Compiling the CTC decoder against KenLM"
    # KenLM's symbols stay inside the library, so another KenLM in the same process (the kenlm module) cannot clash.
    "${CXX:-g++}" "${flags[@]}" -isystem "$prefix/include" "$DECODER_SOURCE" -o "$prefix/lib/.$DECODER.tmp" \
        -L "$prefix/lib" -Wl,--exclude-libs,ALL -lkenlm -lkenlm_util -lz -lbz2 -llzma -pthread
    mv "$prefix/lib/.$DECODER.tmp" "$prefix/lib/$DECODER"
    echo "$wanted_decoder" > "$decoder_stamp"
    echo "CTC decoder built: $prefix/lib/$DECODER"
}

if kenlm_installed; then
    echo "KenLM $KENLM_VERSION already built in $prefix"
    build_decoder
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/build-kenlm.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "Downloading the kenlm $KENLM_VERSION source distribution"
"$python" -m pip download --quiet --no-deps --no-binary kenlm --no-build-isolation --dest "$work" "kenlm==$KENLM_VERSION"
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
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    > "$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; exit 1; }
for library in ZLIB BZip2 LibLZMA; do
    grep -q "Found $library" "$work/cmake.log" \
        || { echo "cmake did not find $library; install its Debian -dev package" >&2; exit 1; }
done

echo "Compiling ${PROGRAMS[*]} and KenLM's libraries"
cmake --build "$build_dir" --parallel "$(nproc)" --target "${PROGRAMS[@]}" kenlm kenlm_util > "$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; exit 1; }

# Install next to the final place, then rename, so an interrupted run never leaves a partial PREFIX/bin,
# PREFIX/lib or PREFIX/include.
staging=$(mktemp -d "$prefix/.staging.XXXXXX")
chmod 0755 "$staging"
mkdir -p "$staging/bin" "$staging/lib" "$staging/include"
for program in "${PROGRAMS[@]}"; do
    install -m 0755 "$build_dir/bin/$program" "$staging/bin/$program"
done
for library in "${LIBRARIES[@]}"; do
    install -m 0644 "$(find "$build_dir" -name "$library" | head -n 1)" "$staging/lib/$library"
done
(cd "$source_dir" && find lm util \( -name '*.hh' -o -name '*.h' \) -exec cp --parents -t "$staging/include" {} +)
echo "$wanted" > "$staging/bin/.kenlm-version"
for part in include lib bin; do
    rm -rf "${prefix:?}/$part"
    mv "$staging/$part" "$prefix/$part"
done
rmdir "$staging"
echo "KenLM $KENLM_VERSION built into $prefix: ${PROGRAMS[*]} ${LIBRARIES[*]}"
build_decoder
