"""Release packaging: model card, metadata.json, the .tar.xz archives and their SHA256SUMS.

The archives follow what the Italian DeepSpeech project published: ``model_tflite_it.tar.xz`` (model, scorer,
alphabet, card), ``checkpoint_it.tar.xz`` (best checkpoint with its state files, flags and alphabet; unpacked, the
folder works as TRANSFER_CHECKPOINT_DIR or as DeepSpeech's --checkpoint_dir) and ``model_savedmodel_it.tar.xz``;
``model_pbmm_it.tar.xz`` (memory-mapped graph, scorer, alphabet, card) when the TensorFlow client loaded the .pbmm.
Archives are reproducible: sorted members, fixed owner and time.
"""

from __future__ import annotations

import io
import json
import platform
import tarfile
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Iterable

from deepspeech_it.config import TFLITE_FILE
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.data.framing import BYTES_PER_SECOND, WAV_HEADER_BYTES
from deepspeech_it.util.atomic import atomic_path, write_text_atomic
from deepspeech_it.util.digest import sha256_of
from deepspeech_it.util.progress import progress_bar

LICENCE = "MPL-2.0"       # the project's licence, as DeepSpeech's own models


@dataclass(frozen=True)
class ArchiveMember:
    name: str                  # path inside the archive
    source: Path | None = None  # a file or folder on disk …
    data: bytes | None = None   # … or literal content


def corpus_hours(csv_paths: Iterable[Path]) -> dict[str, dict]:
    """Clips and hours per CSV (from wav_filesize: 16 kHz mono 16-bit, 44-byte header)."""
    summary = {}
    for path in csv_paths:
        if not path.exists():
            continue
        sizes = [row.size for row in read_rows(path)]
        seconds = sum(max(size - WAV_HEADER_BYTES, 0) for size in sizes) / BYTES_PER_SECOND
        summary[path.stem] = {"clips": len(sizes), "hours": round(seconds / 3600, 3)}
    return summary


def package_versions(names: Iterable[str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def write_tar_xz(path: Path, members: list[ArchiveMember], show_progress: bool = False) -> None:
    """A reproducible .tar.xz: members in the given order (folders recursively, sorted), owner root, time 0.

    Compressing a full-size checkpoint takes minutes, so a bar counts the bytes (when PROGRESS allows)."""
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    entries: list[tuple[str, Path | None, bytes | None]] = []
    for member in members:
        if member.data is not None or not member.source.is_dir():
            entries.append((member.name, member.source, member.data))
            continue
        for source in [member.source] + sorted(member.source.rglob("*")):
            suffix = source.relative_to(member.source).as_posix() if source != member.source else ""
            entries.append((member.name + ("/" + suffix if suffix else ""), source, None))
    total = sum(len(data) if data is not None else source.stat().st_size if source.is_file() else 0
                for _, source, data in entries)
    bar = progress_bar(total, path.name, show_progress)
    bar.start()
    with atomic_path(path) as temp:
        with tarfile.open(temp, "w:xz", format=tarfile.PAX_FORMAT) as archive:
            for name, source, data in entries:
                if data is not None:
                    info = normalise(tarfile.TarInfo(name))
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
                    bar.update(bar.value + len(data))
                elif source.is_dir():
                    archive.add(source, name, recursive=False, filter=normalise)
                else:
                    with open(source, "rb") as handle:
                        archive.addfile(normalise(archive.gettarinfo(source, name)), _Counted(handle, bar))
    bar.finish(dirty=True)


class _Counted(io.RawIOBase):
    """A file read through tarfile that advances a progress bar by the bytes read."""

    def __init__(self, handle, bar):
        self._handle, self._bar = handle, bar

    def read(self, size=-1) -> bytes:
        block = self._handle.read(size)
        self._bar.update(min(self._bar.value + len(block), self._bar.max_value))
        return block


def write_sha256sums(path: Path, files: Iterable[Path]) -> dict[str, str]:
    """``sha256sum``-compatible list (two spaces, names relative to PATH's folder): check with ``sha256sum -c``."""
    sums = {f.name: sha256_of(f) for f in files}
    write_text_atomic(path, "".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    return sums


GRAPH_FILE_TEXT = {
    ".pbmm": "the same network as a frozen TensorFlow graph, memory-mapped (TensorFlow's .pbmm format), float32; "
             "for the TensorFlow build of DeepSpeech 0.9.3 (`deepspeech`, `deepspeech-gpu`)",
    ".pb": "the same frozen TensorFlow graph as one protobuf, float32; the client reads it whole into memory",
}


def model_card(meta: dict) -> str:
    """MODEL_CARD.md from metadata.json's content."""
    test = meta.get("test") or {}
    training = meta.get("training") or {}
    graphs = {name: report for name, report in meta["tensorflow_graphs"].items() if report["released"]}
    lines = [
        f"# {meta['name']}",
        "",
        f"Speech-to-text model for **{meta['language']}** in the format of Mozilla DeepSpeech 0.9.3 "
        "(also run by Coqui STT 1.x).",
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        f"| `output_graph.tflite` | acoustic model and feature extraction, TFLite, "
        f"{'dynamic-range quantised' if meta['tflite']['quantized'] else 'float32'} |",
        *(f"| `{name}` | {GRAPH_FILE_TEXT[Path(name).suffix]} |" for name in graphs),
        "| `kenlm.scorer` | language model and vocabulary (DeepSpeech scorer package) |",
        "| `alphabet.txt` | output characters, one per line (CTC blank after the last) |",
        "| `saved_model/` | TensorFlow SavedModel: batch of 16 kHz audio → per-frame probabilities |",
        "",
        "## Data",
        "",
        f"Trained on the union of the train sets of {meta['data']['source']}; tuned and tested on the "
        f"{meta['data']['evaluation']}.",
        "",
        "| corpus | licence | train clips | train hours | dev hours | test hours |",
        "|---|---|---|---|---|---|",
    ]
    for corpus in meta["data"]["corpora"]:
        splits = corpus["splits"]
        hours = [str(splits.get(split, {}).get("hours", "-")) for split in ("train", "dev", "test")]
        lines.append(f"| {corpus['source']} | {corpus['licence']} | {splits.get('train', {}).get('clips', '-')} | "
                     + " | ".join(hours) + " |")
    if not meta["data"]["corpora"]:
        lines.append("| (the imported CSVs were not found) | | | | | |")
    lines += ["", "## Training", "", "| hyper-parameter | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in sorted(training.items())]
    lines += ["", "## Test results", ""]
    if test:
        lines += [
            f"On {test.get('utterances', '?')} test utterances.",
            "",
            "| decoding | WER | CER |",
            "|---|---|---|",
            f"| beam search with `kenlm.scorer` (beam {meta['beam_width']}) | "
            f"{_percent(test['with_scorer']['wer'])} | {_percent(test['with_scorer']['cer'])} |",
            f"| greedy, no scorer | {_percent(test['without_scorer']['wer'])} | "
            f"{_percent(test['without_scorer']['cer'])} |",
        ]
    else:
        lines.append("Not evaluated (stage 05 has not run).")
    if meta["data"].get("corpus_tests"):
        lines += ["", "Each corpus's own test set, greedy decoding (no scorer):", "",
                  "| corpus | utterances | WER | CER |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['utterances']} | {_percent(r['wer'])} | {_percent(r['cer'])} |"
                  for name, r in meta["data"]["corpus_tests"].items()]
    lines += ["", f"Decoder weights: lm_alpha = {meta['lm_alpha']}, lm_beta = {meta['lm_beta']} "
              "(stored in the scorer).", "", "## Verified clients", "",
              "Each file was loaded with `kenlm.scorer` by the real client library of these packages:", "",
              "| file | loaded by |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(clients) or 'none: not released'} |" for name, clients in meta["loaded_by"].items()]
    lines.append("")
    evidence = {TFLITE_FILE: meta["verified_with"],
                **{name: report["verified_with"] for name, report in meta["tensorflow_graphs"].items()}}
    for file_name, clients in evidence.items():
        lines += [f"- `{file_name}` in {name}: {check}" for name, check in clients.items()]
    for name, report in meta["tensorflow_graphs"].items():
        if not report["released"]:
            lines.append(f"- `{name}`: {report['note']}")
    if not meta["verified_with"]:
        lines.append(f"- `{TFLITE_FILE}`: not verified (the client libraries could not be fetched when this "
                     "model was exported)")
    lines += ["", "## Versions", ""]
    lines += [f"- {name} {version}" for name, version in meta["versions"].items()]
    lines += ["", "## Licence", "", f"{meta['licence']}.", ""]
    return "\n".join(lines)


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def write_metadata(models_dir: Path, meta: dict) -> None:
    write_text_atomic(models_dir / "metadata.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(models_dir / "MODEL_CARD.md", model_card(meta))
