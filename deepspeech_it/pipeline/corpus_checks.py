"""Stage 01 for the corpora beside Common Voice: each chosen one present, readable, and identified by its
checksum: MLS against the md5s its publisher lists, the others (which publish none) by a sha256 that is recorded
and reported, so a later run can tell whether the files changed."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import soundfile

from deepspeech_it.config import Config
from deepspeech_it.data import voxforge, voxpopuli
from deepspeech_it.data.corpora import CATALOGUE
from deepspeech_it.pipeline.preflight import Finding, hash_file
from deepspeech_it.pipeline.records import StageRecord, fingerprint

# The Ogg codecs a corpus's audio needs from libsndfile (1.1 and later decode Opus).
OGG_CODECS = {"mls": "OPUS", "voxpopuli": "VORBIS"}
# md5 of the two Italian MLS archives (OpenSLR 94's download table, as carried by public loaders).
MLS_MD5 = {"dc77f5805aecc7182aa20786032e5dc1": "mls_italian.tar.gz (FLAC)",
           "ca5a74d7e97cc62635022719e0ef529d": "mls_italian_opus.tar.gz (Opus)"}


def source_files(corpus: str, source: Path) -> list[Path]:
    """The published files of CORPUS at SOURCE (empty when none is there)."""
    if corpus in ("mailabs", "mls"):
        return [source] if source.is_file() else []
    if not source.is_dir():
        return []
    if corpus == "voxforge":
        return sorted(source.glob(voxforge.ARCHIVES))
    processed = voxpopuli.processed_root(source)
    if processed is not None:
        return sorted(processed.glob("asr_*.tsv"))
    annotations = source / voxpopuli.ANNOTATIONS
    return [annotations] + voxpopuli.session_archives(source) if annotations.is_file() else []


def check_corpus(corpus: str, config: Config, show: bool) -> tuple[list[Finding], int]:
    """Findings for one corpus, and the bytes its files take (for the free-space check)."""
    info, source = CATALOGUE[corpus], config.corpus_source(corpus)
    files = source_files(corpus, source)
    if not files:
        return [Finding(False, f"{info.title}: nothing usable at {source}; put the corpus there as published or set "
                               f"{info.variable} (see README, 'More corpora')")], 0
    size = sum(path.stat().st_size for path in files)
    findings = [Finding(True, f"{info.title}: {source} ({len(files)} file(s), {size / 1e9:.2f} GB)")]
    unreadable = [path for path in files if not os.access(path, os.R_OK)]
    if unreadable:
        return findings + [Finding(False, f"{info.title}: {unreadable[0]} is not readable; fix its permissions")], size
    damaged = [path for path in files if path.name.endswith((".tar", ".tgz", ".tar.gz")) and not _opens(path)]
    if damaged:
        # One damaged VoxForge session costs its few clips; a damaged single archive costs the whole corpus.
        findings.append(Finding(False, f"{info.title}: {len(damaged)} archive(s) cannot be opened, e.g. "
                                       f"{damaged[0].name}; download again", blocking=corpus != "voxforge"))
    return findings + _decoder(corpus, source) + [_identity(corpus, files, config, show)], size


def _decoder(corpus: str, source: Path) -> list[Finding]:
    codec = OGG_CODECS.get(corpus)
    if corpus == "mls" and "opus" not in source.name:
        codec = None    # the FLAC release
    if codec is None or codec in soundfile.available_subtypes("OGG"):
        return []
    return [Finding(False, f"libsndfile {soundfile.__libsndfile_version__} cannot decode Ogg {codec.title()}, which "
                           f"{CATALOGUE[corpus].title} uses; reinstall soundfile (>= 0.12) with `make setup`")]


def _opens(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, EOFError, OSError):
        return False


def _identity(corpus: str, files: list[Path], config: Config, show: bool) -> Finding:
    """The corpus's checksum, computed once per version of its files (cached by size and modification time)."""
    record = StageRecord(config.layout.sources, f"check_sources_{corpus}")
    fp = fingerprint({"corpus": corpus}, files)
    previous = record.read()
    if record.is_current(fp) and previous:
        summary = previous["summary"]
        return Finding(summary["ok"], summary["message"] + " (checksum cached)", blocking=False)
    print(f"checksumming {CATALOGUE[corpus].title} ({len(files)} file(s)) ...")
    digests = {path.name: hash_file(path, ("sha256", "md5") if corpus == "mls" else ("sha256",), show) for path in files}
    finding = _judge(corpus, digests)
    record.mark_done(fp, summary={"ok": finding.ok, "message": finding.message,
                                  "sha256": {name: d["sha256"] for name, d in digests.items()}})
    return finding


def _judge(corpus: str, digests: dict[str, dict[str, str]]) -> Finding:
    title = CATALOGUE[corpus].title
    if corpus == "mls":
        (name, digest), = digests.items()
        known = MLS_MD5.get(digest["md5"])
        if known:
            return Finding(True, f"{title}: md5 {digest['md5']} is the published one of {known}")
        return Finding(False, f"{title}: md5 {digest['md5']} of {name} is not a published MLS Italian md5 (sha256 "
                              f"{digest['sha256']} recorded); if the download is damaged, stage 02 will say so",
                       blocking=False)
    if len(digests) == 1:
        (name, digest), = digests.items()
        return Finding(True, f"{title}: sha256 {digest['sha256']} of {name} recorded (no published checksum)")
    combined = hashlib.sha256("".join(f"{d['sha256']}  {n}\n" for n, d in sorted(digests.items())).encode())
    return Finding(True, f"{title}: sha256 {combined.hexdigest()} of the list of {len(digests)} file sha256s "
                         "recorded (no published checksum)")
