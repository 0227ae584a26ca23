"""Stage 02's first half: each chosen corpus extracted once (resumable, safe) and read into rows."""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections import Counter
from pathlib import Path, PurePosixPath

from deepspeech_it.config import Config, ConfigError
from deepspeech_it.data import commonvoice, mailabs, mls, voxforge, voxpopuli
from deepspeech_it.data.archive import ArchiveError, extract_archive
from deepspeech_it.data.clips import Row
from deepspeech_it.data.corpora import CATALOGUE
from deepspeech_it.pipeline.records import StageRecord, fingerprint
from deepspeech_it.pipeline.runner import StageError

DAMAGED_ARCHIVE = "archive that cannot be unpacked"


def corpus_rows(corpus: str, config: Config, show: bool,
                preferred: dict[str, str]) -> tuple[list[Row], Counter, Path]:
    """The rows of CORPUS, what was skipped before any split was known (damaged session archives...) and the
    folder they were read from."""
    skipped = Counter()
    reader = {"cv": _cv, "mailabs": _mailabs, "mls": _mls, "voxpopuli": _voxpopuli, "voxforge": _voxforge}[corpus]
    try:
        rows, origin = reader(config, config.layout.corpus_extracted(corpus), show, skipped, preferred)
    except (UnicodeDecodeError, csv.Error, gzip.BadGzipFile, EOFError, KeyError) as problem:
        raise StageError(f"{CATALOGUE[corpus].title} in {config.corpus_source(corpus)} cannot be read "
                         f"({type(problem).__name__}: {problem}); is it the corpus as published?") from None
    return rows, skipped, origin


def _existing(config: Config, corpus: str, folder: bool = False) -> Path:
    path = config.corpus_source(corpus)
    if not (path.is_dir() if folder else path.is_file()):
        raise ConfigError(f"{CATALOGUE[corpus].variable}={path}: no such {'folder' if folder else 'file'}")
    return path


def _cv(config, extracted, show, skipped, preferred) -> tuple[list[Row], Path]:
    extract_once([_existing(config, "cv")], extracted, show)
    corpus_dir = commonvoice.find_corpus_dir(extracted, config.model_language)
    if corpus_dir is None:
        raise StageError(f"no train.tsv in {extracted} (neither at the top nor in cv-corpus-*/{config.model_language}/); "
                         "is CV_ARCHIVE a Common Voice archive?")
    return commonvoice.read_rows(corpus_dir), corpus_dir


def _mailabs(config, extracted, show, skipped, preferred) -> tuple[list[Row], Path]:
    extract_once([_existing(config, "mailabs")], extracted, show)
    root = mailabs.find_root(extracted)
    if root is None:
        raise StageError(f"no it_IT/by_book folder in {extracted}; is MAILABS_ARCHIVE the M-AILABS it_IT.tgz?")
    return mailabs.read_rows(root, skipped, preferred), root


def _mls(config, extracted, show, skipped, preferred) -> tuple[list[Row], Path]:
    extract_once([_existing(config, "mls")], extracted, show)
    root = mls.find_root(extracted)
    if root is None:
        raise StageError(f"no train/transcripts.txt in {extracted}; is MLS_ARCHIVE an MLS Italian archive?")
    return mls.read_rows(root, skipped), root


def _voxpopuli(config, extracted, show, skipped, preferred) -> tuple[list[Row], Path]:
    folder = _existing(config, "voxpopuli", folder=True)
    processed = voxpopuli.processed_root(folder)
    if processed is not None:
        return voxpopuli.processed_rows(processed), processed
    archives = voxpopuli.session_archives(folder)
    if not (folder / voxpopuli.ANNOTATIONS).is_file() or not archives:
        raise ConfigError(f"VOXPOPULI_DIR={folder}: holds neither {voxpopuli.ANNOTATIONS} with "
                          f"{voxpopuli.SESSION_ARCHIVES} archives nor transcribed_data/it/asr_*.tsv")
    annotations = voxpopuli.annotation_rows(folder)
    extract_once(archives, extracted, show, wanted=voxpopuli.wanted_sessions(annotations))
    return voxpopuli.raw_rows(annotations, extracted, skipped), folder


def _voxforge(config, extracted, show, skipped, preferred) -> tuple[list[Row], Path]:
    folder = _existing(config, "voxforge", folder=True)
    archives = sorted(folder.glob(voxforge.ARCHIVES))
    if not archives:
        raise ConfigError(f"VOXFORGE_DIR={folder}: no {voxforge.ARCHIVES} session archives")
    skipped[DAMAGED_ARCHIVE] += extract_once(archives, extracted, show, tolerate_damaged=True)
    return voxforge.read_rows(extracted, skipped), folder


def extract_once(archives: list[Path], destination: Path, show: bool, wanted: set[str] | None = None,
                 tolerate_damaged: bool = False) -> int:
    """Extracts ARCHIVES into DESTINATION unless the same archives were extracted already (an interrupted
    extraction resumes). WANTED: the file names to extract, the rest is left in the archives. Returns the number of
    damaged archives, which stop the stage unless TOLERATE_DAMAGED (VoxForge's thousands of small archives)."""
    record = StageRecord(destination, "extract")
    members = hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest() if wanted is not None else "all"
    fp = fingerprint({"members": members}, archives)
    label = archives[0].name if len(archives) == 1 else f"{len(archives)} archives"
    if record.is_current(fp):
        print(f"stage 02: {label} already extracted, skipped")
        return record.read()["summary"].get("damaged", 0)
    record.mark_running(fp)
    print(f"extracting {label} -> {destination}")
    files = reused = damaged = 0
    skipped = Counter()
    accept = (lambda member: PurePosixPath(member).name in wanted) if wanted is not None else None
    for archive in archives:
        try:
            report = extract_archive(archive, destination, show, accept)
        except ArchiveError as problem:
            if not tolerate_damaged:
                raise
            print(f"  skipped: {problem}")
            damaged += 1
            continue
        files, reused = files + report.files, reused + report.reused
        skipped.update(report.skipped)
    for reason, count in sorted(skipped.items()):
        print(f"  skipped {count} archive member(s): {reason}")
    print(f"  {files} file(s) written, {reused} already there")
    record.mark_done(fp, summary={"files": files, "reused": reused, "skipped": dict(skipped), "damaged": damaged})
    return damaged
