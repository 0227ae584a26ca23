#!/usr/bin/env bash
# Builds the fused CPU kernels of the LSTM's time loop (deepspeech_it/model/lstm_kernel.cc) against the TensorFlow
# of PYTHON (default python3) into PREFIX/liblstm_kernel.so. On x86-64 it is compiled for AVX2 and FMA, which nearly
# every such CPU since 2013 has (deepspeech_it/model/lstm_kernel.py loads it only where the CPU has them; without
# them, TensorFlow's own loop is faster than this kernel in SSE2). A kernel only loads into the TensorFlow it was
# compiled for, so it is rebuilt whenever TensorFlow's version or the source changes. Needs a C++ compiler.
#
#   scripts/build_lstm_kernel.sh PREFIX          e.g. PYTHON=.venv/bin/python scripts/build_lstm_kernel.sh tools/lstm-kernel
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
SOURCE="$(cd "$(dirname "$0")/.." && pwd)/deepspeech_it/model/lstm_kernel.cc"
python=${PYTHON:-python3}
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
stamp="$prefix/.kernel-version"

# TensorFlow's compile flags name its headers with -I; as -isystem their own warnings stay quiet under -Werror.
read -r -a tf_flags < <("$python" -c 'import tensorflow as tf
flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
print(tf.__version__, *[("-isystem" + f[2:]) if f.startswith("-I") else f for f in flags])' 2>/dev/null)
tf_version=${tf_flags[0]}
tf_flags=("${tf_flags[@]:1}")
flags=(-O3 -fPIC -shared -Wall -Wextra -Werror)
[[ "$(uname -m)" == x86_64 ]] && flags+=(-mavx2 -mfma)
wanted="$(sha256sum < "$SOURCE" | cut -d' ' -f1) tensorflow $tf_version ${flags[*]}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -f "$prefix/liblstm_kernel.so" ]]; then
    echo "LSTM kernel already built in $prefix for TensorFlow $tf_version"
    exit 0
fi
echo "Compiling the LSTM kernel for TensorFlow $tf_version"
"${CXX:-g++}" "${flags[@]}" "$SOURCE" -o "$prefix/.liblstm_kernel.so.tmp" "${tf_flags[@]}"
mv "$prefix/.liblstm_kernel.so.tmp" "$prefix/liblstm_kernel.so"
echo "$wanted" > "$stamp"
echo "LSTM kernel built: $prefix"
