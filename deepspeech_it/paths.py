"""Where the project's own files and the external programs of the pipeline are found."""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ALPHABET_DIR = PROJECT_ROOT / "alphabet"

# `make setup` builds KenLM and the CTC decoder here (scripts/build_kenlm.sh); the container image has the same tree.
KENLM_PREFIX = PROJECT_ROOT / "tools" / "kenlm"
KENLM_BIN = KENLM_PREFIX / "bin"
DECODER_LIBRARY = KENLM_PREFIX / "lib" / "libctc_beam_search.so"
KENLM_PROGRAMS = ("lmplz", "build_binary", "filter")
# `make setup` builds the fused CPU kernel of the LSTM's time loop here, for the installed TensorFlow
# (scripts/build_lstm_kernel.sh).
LSTM_KERNEL_LIBRARY = PROJECT_ROOT / "tools" / "lstm-kernel" / "liblstm_kernel.so"
# `make setup` and the image's build install the native client libraries here (export/client_libraries.py).
NATIVE_CLIENTS_DIR = PROJECT_ROOT / "tools" / "native-clients"


def find_tool(name: str) -> Path | None:
    """The program NAME from the project's KenLM build, else from PATH; None when neither has it."""
    built = KENLM_BIN / name
    if built.is_file():
        return built
    found = shutil.which(name)
    return Path(found) if found else None
