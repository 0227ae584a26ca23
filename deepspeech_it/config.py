"""The pipeline's configuration: every environment variable, read once, typed and validated.

Each field of :class:`Config` is one variable (its name upper-cased). The field's metadata holds the default as
written in ``env.example``, the parser that turns the text into a typed value, and the one-line meaning. A parser
raises ``ValueError`` with what is allowed; :func:`load_config` turns that into a :class:`ConfigError` naming the
variable, which the scripts print as one line before exiting with code 2.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.evaluate.grid import parse_evaluate_range
from deepspeech_it.model.augment_spec import Augmentation, parse_augment
from deepspeech_it.paths import ALPHABET_DIR


class ConfigError(Exception):
    """A variable holds a value the pipeline cannot use. The message is one line naming the variable."""


# ---- file names of the data folder and of the release: every module takes them from here -----------------------

SPLITS = ("train", "dev", "test")
IMPORT_REPORT_FILE = "import_report.json"
MLS_ARCHIVE_NAMES = ("mls_italian_opus.tar.gz", "mls_italian.tar.gz")
# The corpora stage 02 can import, in the order they are imported and reported (data/corpora.py describes them).
CORPORA = ("cv", "mailabs", "mls", "voxpopuli", "voxforge")
SCORER_FILE = "kenlm.scorer"
LM_BINARY_FILE = "lm.binary"
LM_REPORT_FILE = "lm_report.json"
LM_COVERAGE_FIGURE = "lm_vocabulary_coverage.png"
ALPHABET_FILE = "alphabet.txt"
TFLITE_FILE = "output_graph.tflite"
PB_FILE = "output_graph.pb"
PBMM_FILE = "output_graph.pbmm"


# ---- parsers: text -> value, ValueError says what is allowed ------------------------------------------------


def _integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(_range_text("a whole number", minimum, maximum)) from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(_range_text("a whole number", minimum, maximum))
        return value

    return parse


def _number(minimum: float | None = None, maximum: float | None = None, *, open_min: bool = False,
            open_max: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(_range_text("a number", minimum, maximum, open_min, open_max)) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(_range_text("a finite number", minimum, maximum, open_min, open_max))
        low_bad = minimum is not None and (value <= minimum if open_min else value < minimum)
        high_bad = maximum is not None and (value >= maximum if open_max else value > maximum)
        if low_bad or high_bad:
            raise ValueError(_range_text("a number", minimum, maximum, open_min, open_max))
        return value

    return parse


def _range_text(kind: str, minimum, maximum, open_min: bool = False, open_max: bool = False) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if open_min else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if open_max else '<='} {maximum:g}")
    return f"allowed: {kind}" + (" " + " and ".join(parts) if parts else "")


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("allowed: 0 or 1")
    return text == "1"


def _text(text: str) -> str:
    return text


def _pattern(regex: str, allowed: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def parse(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(f"allowed: {allowed}")
        return text

    return parse


def _path(text: str) -> Path:
    if not text:
        raise ValueError("allowed: a path")
    return Path(text).expanduser().absolute()


def _optional_path(text: str) -> Path | None:
    return Path(text).expanduser().absolute() if text else None


def _corpora(text: str) -> tuple[str, ...]:
    names = text.replace(",", " ").split()
    allowed = f"allowed: one or more of {' '.join(CORPORA)}, each once"
    unknown = [name for name in names if name not in CORPORA]
    if unknown:
        raise ValueError(f"unknown corpus {unknown[0]!r}; {allowed}")
    if not names or len(set(names)) != len(names):
        raise ValueError(allowed)
    return tuple(name for name in CORPORA if name in names)


def _optional_hex(length: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        text = text.strip().lower()
        if text and not re.fullmatch(f"[0-9a-f]{{{length}}}", text):
            raise ValueError(f"allowed: empty or {length} hexadecimal digits")
        return text

    return parse


def _existing_files(separator: str | None, *, globs: bool) -> Callable[[str], tuple[Path, ...]]:
    def parse(text: str) -> tuple[Path, ...]:
        found: list[Path] = []
        for item in filter(None, (part.strip() for part in text.split(separator))):
            matches = sorted(glob.glob(os.path.expanduser(item))) if globs else [os.path.expanduser(item)]
            existing = [Path(m).absolute() for m in matches if os.path.isfile(m)]
            if not existing:
                raise ValueError(f"allowed: existing files; nothing found for {item!r}")
            found.extend(existing)
        return tuple(found)

    return parse


def _prune(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split())
    except ValueError:
        values = ()
    if not values or any(v < 0 for v in values) or list(values) != sorted(values):
        raise ValueError("allowed: space-separated non-negative, non-decreasing whole numbers, e.g. '0 0 1'")
    return values


def _augment(text: str):
    return parse_augment(text)


def _evaluate_range(text: str):
    if not text:
        return ()
    return parse_evaluate_range(text)


# ---- the configuration ---------------------------------------------------------------------------------------


def var(default: str, parse: Callable[[str], Any], meaning: str) -> Any:
    return field(metadata={"default": default, "parse": parse, "meaning": meaning})


def _cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Config:
    # Paths and sources
    data_dir: Path = var("./work", _path, "Folder for every input and output of the pipeline (the container sets /mnt)")
    cv_archive: Path = var("${DATA_DIR}/sources/it.tar.gz", _path, "Common Voice Italian archive (it.tar.gz)")
    cv_sha256: str = var("", _optional_hex(64), "Expected sha256 of CV_ARCHIVE; empty: it must be a known release")
    cv_sha1: str = var("", _optional_hex(40), "Expected sha1 of CV_ARCHIVE; empty: not checked")
    corpora: tuple = var("cv", _corpora, f"Corpora to import and train on, space-separated: any of {' '.join(CORPORA)}")
    mailabs_archive: Path = var("${DATA_DIR}/sources/it_IT.tgz", _path, "M-AILABS Italian archive (it_IT.tgz)")
    mls_archive: Path | None = var("", _optional_path, "MLS Italian archive; empty: sources/mls_italian_opus.tar.gz, "
                                   "else sources/mls_italian.tar.gz under DATA_DIR")
    voxpopuli_dir: Path = var("${DATA_DIR}/sources/voxpopuli", _path,
                              "VoxPopuli folder: original_<year>.tar and asr_it.tsv.gz, or transcribed_data/it/")
    voxforge_dir: Path = var("${DATA_DIR}/sources/voxforge", _path, "VoxForge folder of per-session .tgz archives")
    model_language: str = var("it", _pattern(r"[a-z]{2,3}", "a 2 or 3 letter language code"),
                              "Language code written into the model metadata and release names")
    english_compatible: bool = var("0", _flag, "1: English alphabet, accents stripped (keeps an English output layer)")
    progress: bool = var("1", _flag, "0 turns progress bars off (they are off anyway when not on a terminal)")
    # Import
    max_secs: float = var("10", _number(0, open_min=True), "Longest clip kept, in seconds")
    import_jobs: int = var("", _integer(1), "Processes converting clips; empty: all cores")
    # Language model
    lm_sources: tuple = var("", _existing_files(None, globs=True),
                            "Extra LM text: space-separated files or globs (plain, .gz, .xz; one sentence a line)")
    lm_order: int = var("5", _integer(2, 6), "Order of the KenLM n-gram model")
    lm_prune: tuple = var("0 0 1", _prune, "lmplz --prune thresholds, one per order from unigrams up")
    lm_top_k: int = var("500000", _integer(1), "Vocabulary size: the most frequent words kept")
    lm_memory: str = var("50%", _pattern(r"\d+(\.\d+)?(%|[bKMGTPEZY])?", "a percentage or a size such as 50% or 4G"),
                         "Memory bound of lmplz")
    lm_keep_arpa: bool = var("0", _flag, "1 keeps the ARPA file next to the binary model")
    lm_alpha: float = var("0.931289039105002", _number(0), "Language-model weight of the decoder")
    lm_beta: float = var("1.1834137581510284", _number(), "Word insertion bonus of the decoder")
    # Acoustic model training
    n_hidden: int = var("2048", _integer(1), "Width of the hidden layers and of the LSTM")
    batch_size: int = var("64", _integer(1), "Global batch size (split across GPUs)")
    epochs: int = var("30", _integer(1), "Most training epochs")
    learning_rate: float = var("0.0001", _number(0, open_min=True), "Adam learning rate")
    dropout: float = var("0.4", _number(0, 1, open_max=True), "Dropout rate of layers 1, 2, 3 and 5")
    early_stop: bool = var("1", _flag, "1 stops when the dev loss has not improved for ES_EPOCHS epochs")
    es_epochs: int = var("10", _integer(1), "Epochs without dev improvement before early stopping")
    reduce_lr_on_plateau: bool = var("0", _flag, "1 reduces the learning rate when the dev loss stalls")
    plateau_epochs: int = var("10", _integer(1), "Epochs without dev improvement before the learning rate is reduced")
    plateau_reduction: float = var("0.1", _number(0, 1, open_min=True, open_max=True),
                                   "Factor applied to the learning rate on a plateau")
    random_seed: int = var("4568", _integer(0), "Seed of every random generator")
    max_to_keep: int = var("5", _integer(1), "Training checkpoints kept")
    checkpoint_secs: int = var("600", _integer(1), "Longest time between two checkpoints, in seconds")
    amp: bool = var("1", _flag, "1: mixed precision (float16 on GPUs, bfloat16 on CPUs)")
    train_files: tuple = var("", _existing_files(",", globs=False), "Extra training CSVs, comma-separated")
    dev_files: tuple = var("", _existing_files(",", globs=False), "Extra dev CSVs, comma-separated")
    test_files: tuple = var("", _existing_files(",", globs=False), "Extra test CSVs, comma-separated")
    feature_cache: bool = var("0", _flag, "1 caches computed features under DATA_DIR/tmp")
    augment: tuple = var("", _augment, "Training augmentations in DeepSpeech 0.9.3's --augment syntax, space-separated, "
                         "e.g. 'reverb[p=0.3,delay=50:150] frequency_mask[n=1:3]'; empty: none")
    fast_train: bool = var("0", _flag, "1: a quick trial, one epoch on one batch of the shortest clips of each split")
    transfer_learning: bool = var("0", _flag, "1 starts from the checkpoint in TRANSFER_CHECKPOINT_DIR")
    transfer_checkpoint_dir: Path = var("/transfer-checkpoint", _path,
                                        "DeepSpeech 0.9.x or Coqui STT 1.x checkpoint folder for transfer learning")
    drop_source_layers: int = var("1", _integer(0, 5), "Layers re-initialised from the end when transferring (0-5)")
    # Decoder and its tuning
    beam_width: int = var("500", _integer(1), "Beam width of the decoder")
    lm_evaluate_range: tuple = var("", _evaluate_range,
                                   "lm_alpha,lm_beta pairs to try, e.g. '0.5,1.5 0.6,1.4' or '0:2:5,0:3:4'; empty: none")
    lm_optimize_trials: int = var("0", _integer(0), "Trials of an optuna search of lm_alpha/lm_beta instead of a grid")
    lm_alpha_max: float = var("5", _number(0, open_min=True), "Upper bound of lm_alpha in the optuna search")
    lm_beta_max: float = var("5", _number(0, open_min=True), "Upper bound of lm_beta in the optuna search")
    # Export
    export_quantize: bool = var("1", _flag, "1 quantises the TFLite model (dynamic range) when the clients accept it")

    @property
    def layout(self) -> "Layout":
        return Layout(self.data_dir)

    @property
    def alphabet_path(self) -> Path:
        return ALPHABET_DIR / ("en.txt" if self.english_compatible else "it.txt")

    @property
    def alphabet(self) -> Alphabet:
        return Alphabet.from_file(self.alphabet_path)

    def as_dict(self) -> dict[str, Any]:
        """The resolved configuration as JSON-friendly values, keyed by variable name."""
        return {f.name.upper(): _plain(getattr(self, f.name)) for f in fields(self)}

    def corpus_source(self, corpus: str) -> Path:
        """The archive or folder CORPUS is imported from."""
        if corpus == "mls":
            if self.mls_archive is not None:
                return self.mls_archive
            candidates = [self.layout.sources / name for name in MLS_ARCHIVE_NAMES]
            return next((path for path in candidates if path.is_file()), candidates[0])
        return getattr(self, f"{corpus}_{'dir' if corpus in ('voxpopuli', 'voxforge') else 'archive'}")

    def require_file(self, name: str) -> Path:
        """Stops the run with a ConfigError when the file named by variable NAME is missing."""
        path = getattr(self, name.lower())
        if not Path(path).is_file():
            raise ConfigError(f"{name}={path}: no such file")
        return path


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Augmentation):
        return value.text
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Layout:
    """The output folders under DATA_DIR, as the seed's host folder had them."""

    data_dir: Path

    @property
    def sources(self) -> Path:
        return self.data_dir / "sources"

    @property
    def extracted(self) -> Path:
        return self.data_dir / "extracted"

    @property
    def cv_dir(self) -> Path:
        return self.data_dir / "data" / "cv-it"

    def cv_csv(self, split: str) -> Path:
        return self.split_csv("cv", split)

    def corpus_dir(self, corpus: str) -> Path:
        """Where a corpus's clips and train/dev/test.csv go (Common Voice keeps the seed's data/cv-it)."""
        return self.cv_dir if corpus == "cv" else self.data_dir / "data" / corpus

    def corpus_extracted(self, corpus: str) -> Path:
        return self.extracted if corpus == "cv" else self.extracted / corpus

    def split_csv(self, corpus: str, split: str) -> Path:
        return self.corpus_dir(corpus) / f"{split}.csv"

    @property
    def import_report(self) -> Path:
        """Stage 02's report over every imported corpus (each corpus folder has its own IMPORT_REPORT_FILE too)."""
        return self.reports / IMPORT_REPORT_FILE

    def corpus_test_report(self, corpus: str) -> Path:
        """Stage 04's greedy report on one corpus's own test set."""
        return self.reports / f"test_greedy_{corpus}.json"

    @property
    def scorer(self) -> Path:
        """Stage 03's scorer, whose header stage 05 updates; stage 06 copies it into the release."""
        return self.lm / SCORER_FILE

    @property
    def lm(self) -> Path:
        return self.data_dir / "lm"

    @property
    def checkpoints(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def models(self) -> Path:
        return self.data_dir / "models"

    @property
    def reports(self) -> Path:
        return self.data_dir / "reports"

    @property
    def tboard_logs(self) -> Path:
        return self.data_dir / "tboard_logs"

    @property
    def tmp(self) -> Path:
        return self.data_dir / "tmp"

    def all(self) -> list[Path]:
        return [self.sources, self.extracted, self.cv_dir, self.lm, self.checkpoints, self.models, self.reports,
                self.tboard_logs, self.tmp]

    def create(self) -> None:
        for folder in self.all():
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    parse: Callable[[str], Any]
    meaning: str


VARIABLES: tuple[Variable, ...] = tuple(
    Variable(f.name.upper(), f.metadata["default"], f.metadata["parse"], f.metadata["meaning"]) for f in fields(Config)
)


def _default_text(variable: Variable, resolved: Mapping[str, str]) -> str:
    if variable.name == "IMPORT_JOBS" and not variable.default:
        return str(_cores())
    return variable.default.replace("${DATA_DIR}", resolved.get("DATA_DIR", ""))


def load_config(environ: Mapping[str, str] = os.environ) -> Config:
    """Reads every variable of the pipeline from ENVIRON; an unset or empty variable takes its default."""
    values: dict[str, Any] = {}
    resolved: dict[str, str] = {}
    for variable in VARIABLES:
        raw = environ.get(variable.name, "")
        text = raw if raw.strip() else _default_text(variable, resolved)
        try:
            values[variable.name.lower()] = variable.parse(text.strip())
        except ValueError as problem:
            raise ConfigError(f"{variable.name}={raw!r}: {problem}") from None
        resolved[variable.name] = str(_plain(values[variable.name.lower()]))
    config = Config(**values)
    _check_together(config)
    return config


def _check_together(config: Config) -> None:
    if config.lm_evaluate_range and config.lm_optimize_trials:
        raise ConfigError(f"LM_OPTIMIZE_TRIALS={config.lm_optimize_trials}: allowed: 0 when LM_EVALUATE_RANGE is "
                          "set (choose a grid or an optuna search)")
    if len(config.lm_prune) > config.lm_order:
        raise ConfigError(f"LM_PRUNE={' '.join(map(str, config.lm_prune))!r}: allowed: at most LM_ORDER "
                          f"({config.lm_order}) thresholds")


def env_example_text() -> str:
    """The text of env.example: every variable with its meaning and default, in the order of Config."""
    lines = ["# Every variable the pipeline reads, with its default. Export the ones you want to change.",
             "# An empty value means the default. Regenerate after changing config.py:",
             "#   .venv/bin/python -c 'from deepspeech_it.config import env_example_text as t; print(t(), end=\"\")' "
             "> env.example", ""]
    for variable in VARIABLES:
        lines.append(f"# {variable.meaning}")
        lines.append(f"{variable.name}={variable.default}")
    return "\n".join(lines) + "\n"
