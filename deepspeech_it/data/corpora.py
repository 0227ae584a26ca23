"""The corpora the pipeline imports: what each is called, its licence, and whether it publishes splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Corpus:
    name: str
    title: str
    licence: str
    official_splits: bool
    variable: str           # the Config variable naming its archive or folder


CATALOGUE = {corpus.name: corpus for corpus in (
    Corpus("cv", "Common Voice Italian", "CC0 1.0", True, "CV_ARCHIVE"),
    Corpus("mailabs", "M-AILABS Speech Dataset, Italian",
           "M-AILABS licence (BSD-style: commercial use allowed, keep the copyright notice, no endorsement); "
           "texts and LibriVox recordings in the public domain", False, "MAILABS_ARCHIVE"),
    Corpus("mls", "Multilingual LibriSpeech (MLS), Italian", "CC BY 4.0", True, "MLS_ARCHIVE"),
    Corpus("voxpopuli", "VoxPopuli, Italian transcribed speech", "CC0 (with the European Parliament's legal notice)",
           True, "VOXPOPULI_DIR"),
    Corpus("voxforge", "VoxForge, Italian", "GPL", False, "VOXFORGE_DIR"),
)}


def planning_order(names) -> list[str]:
    """Corpora with official splits first: the book-disjoint split of M-AILABS follows MLS's for shared books."""
    return sorted(names, key=lambda name: not CATALOGUE[name].official_splits)


def training_csvs(config) -> dict[str, list[Path]]:
    """The CSVs stages 03-05 use: train is the union of every chosen corpus's train set; dev and test are Common
    Voice's when it is chosen (so results compare with published Common Voice Italian figures), otherwise the union
    of the chosen corpora's. TRAIN_FILES, DEV_FILES and TEST_FILES are added to them."""
    layout = config.layout
    held_out = ["cv"] if "cv" in config.corpora else list(config.corpora)
    return {"train": _with_rows([layout.split_csv(c, "train") for c in config.corpora]) + list(config.train_files),
            "dev": _with_rows([layout.split_csv(c, "dev") for c in held_out]) + list(config.dev_files),
            "test": _with_rows([layout.split_csv(c, "test") for c in held_out]) + list(config.test_files)}


def held_out_csvs(config) -> list[Path]:
    """Every dev and test set of the chosen corpora and of DEV_FILES/TEST_FILES: none of their sentences may reach
    the language model, whether or not the set is used for evaluation."""
    return ([config.layout.split_csv(c, split) for c in config.corpora for split in ("dev", "test")]
            + list(config.dev_files) + list(config.test_files))


def corpus_test_csvs(config) -> dict[str, Path]:
    """Each chosen corpus's own test set, scored on its own when more than one corpus is chosen."""
    if len(config.corpora) < 2:
        return {}
    return {c: path for c in config.corpora if _has_rows(path := config.layout.split_csv(c, "test"))}


def _with_rows(paths: list[Path]) -> list[Path]:
    # A corpus whose split came out empty (a tiny VoxForge, say) is left out rather than failing validation; a
    # missing file stays, so that the stage says which import is missing.
    kept = [path for path in paths if not path.is_file() or _has_rows(path)]
    return kept or paths[:1]


def _has_rows(path: Path) -> bool:
    if not path.is_file():
        return False
    # Lines counted as bytes: a CSV that is not UTF-8 is kept, for the validator to name what is wrong with it.
    with open(path, "rb") as handle:
        return sum(1 for _ in zip(range(2), handle)) > 1
