"""The pipeline's configuration: every environment variable, read once, typed and validated.

Each field of :class:`Config` is one variable (its name upper-cased). The field's metadata holds the default as
written in ``env.example``, the parser that turns the text into a typed value (``values.py``), and the one-line
meaning. A parser raises ``ValueError`` with what is allowed; :func:`load_config` turns that into a
:class:`ConfigError` naming the variable, which the scripts print as one line before exiting with code 2.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.evaluate.grid import MAX_PAIRS, MAX_WEIGHT
from deepspeech_it.model.augment_spec import Augmentation
from deepspeech_it.paths import ALPHABET_DIR
from deepspeech_it.values import (CORPORA, KENLM_MAX_ORDER, MAX_BATCH_SIZE, MAX_BEAM_WIDTH, MAX_CHECKPOINT_SECS,
                                  MAX_CHECKPOINTS_KEPT, MAX_CLIP_SECS, MAX_EPOCHS, MAX_N_HIDDEN, MAX_SEED,
                                  MAX_VOCABULARY, Cluster, as_augment, as_corpora, as_evaluate_range, as_existing_files,
                                  as_flag, as_import_jobs, as_integer, as_memory, as_number, as_optional_hex,
                                  as_optional_path, as_path, as_pattern, as_prune, as_tf_config, cores)


class ConfigError(Exception):
    """A variable holds a value the pipeline cannot use. The message is one line naming the variable."""


# ---- file names of the data folder and of the release: every module takes them from here -----------------------

SPLITS = ("train", "dev", "test")
IMPORT_REPORT_FILE = "import_report.json"
MLS_ARCHIVE_NAMES = ("mls_italian_opus.tar.gz", "mls_italian.tar.gz")
SCORER_FILE = "kenlm.scorer"
LM_BINARY_FILE = "lm.binary"
LM_REPORT_FILE = "lm_report.json"
LM_COVERAGE_FIGURE = "lm_vocabulary_coverage.png"
ALPHABET_FILE = "alphabet.txt"
TFLITE_FILE = "output_graph.tflite"
PB_FILE = "output_graph.pb"
PBMM_FILE = "output_graph.pbmm"
ROBUSTNESS_REPORT_FILE = "robustness.json"
ROBUSTNESS_FIGURE = "robustness.png"
DEMO_REPORT_FILE = "demo_report.json"
DEMO_STARTED_FILE = "demo_started"      # written by `make demo` before its first step: seconds since the epoch


# ---- the configuration ---------------------------------------------------------------------------------------


def var(default: str, parse: Callable[[str], Any], meaning: str) -> Any:
    return field(metadata={"default": default, "parse": parse, "meaning": meaning})


@dataclass(frozen=True)
class Config:
    # Paths and sources
    data_dir: Path = var("./work", as_path, "Folder for every input and output of the pipeline (the container sets /mnt)")
    cv_archive: Path = var("${DATA_DIR}/sources/it.tar.gz", as_path, "Common Voice Italian archive (it.tar.gz)")
    cv_sha256: str = var("", as_optional_hex(64), "Expected sha256 of CV_ARCHIVE; empty: it must be a known release")
    cv_sha1: str = var("", as_optional_hex(40), "Expected sha1 of CV_ARCHIVE; empty: not checked")
    corpora: tuple = var("cv", as_corpora, f"Corpora to import and train on, space-separated: any of {' '.join(CORPORA)}")
    mailabs_archive: Path = var("${DATA_DIR}/sources/it_IT.tgz", as_path, "M-AILABS Italian archive (it_IT.tgz)")
    mls_archive: Path | None = var("", as_optional_path, "MLS Italian archive; empty: sources/mls_italian_opus.tar.gz, "
                                   "else sources/mls_italian.tar.gz under DATA_DIR")
    voxpopuli_dir: Path = var("${DATA_DIR}/sources/voxpopuli", as_path,
                              "VoxPopuli folder: original_<year>.tar and asr_it.tsv.gz, or transcribed_data/it/")
    voxforge_dir: Path = var("${DATA_DIR}/sources/voxforge", as_path, "VoxForge folder of per-session .tgz archives")
    model_language: str = var("it", as_pattern(r"[a-z]{2,3}", "a 2 or 3 letter language code"),
                              "Language code written into the model metadata and release names")
    english_compatible: bool = var("0", as_flag, "1: English alphabet, accents stripped (keeps an English output layer)")
    progress: bool = var("1", as_flag, "0 turns progress bars off (they are off anyway when not on a terminal)")
    # Import
    max_secs: float = var("10", as_number(0.0, MAX_CLIP_SECS, open_min=True), "Longest clip kept, in seconds")
    import_jobs: int = var("", as_import_jobs, "Processes converting clips, at most 4 per core; empty: all cores")
    # Language model
    lm_sources: tuple = var("", as_existing_files(None, globs=True),
                            "Extra LM text: space-separated files or globs (plain, .gz, .xz; one sentence a line)")
    lm_order: int = var("5", as_integer(2, KENLM_MAX_ORDER), "Order of the KenLM n-gram model (2-6)")
    lm_prune: tuple = var("0 0 1", as_prune, "lmplz --prune thresholds, one per order from unigrams up")
    lm_top_k: int = var("500000", as_integer(1, MAX_VOCABULARY), "Vocabulary size: the most frequent words kept")
    lm_memory: str = var("50%", as_memory, "Memory bound of lmplz and build_binary: 64M to 90% of the memory")
    lm_keep_arpa: bool = var("0", as_flag, "1 keeps the ARPA file next to the binary model")
    lm_alpha: float = var("0.931289039105002", as_number(0.0, MAX_WEIGHT), "Language-model weight of the decoder")
    lm_beta: float = var("1.1834137581510284", as_number(-MAX_WEIGHT, MAX_WEIGHT), "Word insertion bonus of the decoder")
    # Acoustic model training
    n_hidden: int = var("2048", as_integer(1, MAX_N_HIDDEN), "Width of the hidden layers and of the LSTM")
    batch_size: int = var("64", as_integer(1, MAX_BATCH_SIZE), "Global batch size (split across GPUs)")
    epochs: int = var("30", as_integer(1, MAX_EPOCHS), "Most training epochs")
    sorted_epochs: int = var("1", as_integer(0, MAX_EPOCHS), "First epochs whose batches go from the shortest clips "
                             "to the longest (SortaGrad); the others are shuffled")
    learning_rate: float = var("0.0001", as_number(0.0, 1.0, open_min=True), "Adam learning rate")
    lr_schedule: str = var("constant", as_pattern(r"constant|cosine|tail", "constant, cosine or tail"),
                           "constant: LEARNING_RATE throughout (DeepSpeech's); cosine: falls from LEARNING_RATE "
                           "to a hundredth of it over EPOCHS; tail: constant, then falls in a straight line to a "
                           "hundredth of it over the last LR_TAIL_EPOCHS epochs")
    lr_tail_epochs: int = var("3", as_integer(1, MAX_EPOCHS), "With LR_SCHEDULE=tail: the last epochs, over which "
                              "the learning rate falls (all of them when it is EPOCHS or more)")
    dropout: float = var("0.4", as_number(0.0, 1.0, open_max=True), "Dropout rate of layers 1, 2, 3 and 5")
    early_stop: bool = var("1", as_flag, "1 stops when the dev loss has not improved for ES_EPOCHS epochs")
    es_epochs: int = var("10", as_integer(1, MAX_EPOCHS), "Epochs without dev improvement before early stopping")
    reduce_lr_on_plateau: bool = var("0", as_flag, "1 reduces the learning rate when the dev loss stalls")
    plateau_epochs: int = var("10", as_integer(1, MAX_EPOCHS),
                              "Epochs without dev improvement before the learning rate is reduced")
    plateau_reduction: float = var("0.1", as_number(0.0, 1.0, open_min=True, open_max=True),
                                   "Factor applied to the learning rate on a plateau")
    random_seed: int = var("4568", as_integer(0, MAX_SEED), "Seed of every random generator (0 to 2**32 - 1)")
    max_to_keep: int = var("5", as_integer(1, MAX_CHECKPOINTS_KEPT), "Training checkpoints kept")
    checkpoint_secs: int = var("600", as_integer(1, MAX_CHECKPOINT_SECS),
                               "Longest time between two checkpoints, in seconds")
    amp: bool = var("1", as_flag,
                    "1: mixed precision (float16 on GPUs, bfloat16 on CPUs where it multiplies faster than float32)")
    train_files: tuple = var("", as_existing_files(",", globs=False), "Extra training CSVs, comma-separated")
    dev_files: tuple = var("", as_existing_files(",", globs=False), "Extra dev CSVs, comma-separated")
    test_files: tuple = var("", as_existing_files(",", globs=False), "Extra test CSVs, comma-separated")
    feature_cache: bool = var("0", as_flag, "1 caches computed features under DATA_DIR/tmp")
    augment: tuple = var("", as_augment, "Training augmentations in DeepSpeech 0.9.3's --augment syntax, space-separated, "
                         "e.g. 'reverb[p=0.3,delay=50:150] frequency_mask[n=1:3]'; empty: none")
    fast_train: bool = var("0", as_flag, "1: a quick trial, one epoch on one batch of the shortest clips of each split")
    tf_config: Cluster | None = var("", as_tf_config, "Multi-host training: the cluster and this host's task as JSON "
                                    "(see README); empty: this host alone")
    transfer_learning: bool = var("0", as_flag, "1 starts from the checkpoint in TRANSFER_CHECKPOINT_DIR")
    transfer_checkpoint_dir: Path = var("/transfer-checkpoint", as_path,
                                        "DeepSpeech 0.9.x or Coqui STT 1.x checkpoint folder for transfer learning")
    drop_source_layers: int = var("1", as_integer(0, 5), "Layers re-initialised from the end when transferring (0-5)")
    # Decoder and its tuning
    beam_width: int = var("500", as_integer(1, MAX_BEAM_WIDTH), "Beam width of the decoder")
    lm_evaluate_range: tuple = var("", as_evaluate_range,
                                   "lm_alpha,lm_beta pairs to try, e.g. '0.5,1.5 0.6,1.4' or '0:2:5,0:3:4'; empty: none")
    lm_optimize_trials: int = var("0", as_integer(0, MAX_PAIRS),
                                  "Trials of an optuna search of lm_alpha/lm_beta instead of a grid")
    lm_alpha_max: float = var("5", as_number(0.0, MAX_WEIGHT, open_min=True),
                              "Upper bound of lm_alpha in the optuna search")
    lm_beta_max: float = var("5", as_number(0.0, MAX_WEIGHT, open_min=True),
                             "Upper bound of lm_beta in the optuna search")
    # Export
    export_quantize: bool = var("1", as_flag, "1 quantises the TFLite model (dynamic range) when the clients accept it")

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
    if isinstance(value, Cluster):
        return {"cluster": value.spec, "task": {"type": value.task_type, "index": value.task_index}}
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
    def robustness(self) -> Path:
        """The demo report's degraded copies of the test set, one folder and CSV per condition."""
        return self.data_dir / "robustness"

    @property
    def demo_started(self) -> Path:
        return self.data_dir / DEMO_STARTED_FILE

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

    def check_writable(self) -> None:
        """Raises ConfigError unless this user can create DATA_DIR and write in it and in every folder of it that
        exists; a host folder mounted into the container with another owner is the usual cause."""
        existing = {self.data_dir} | {_nearest_existing(folder, self.data_dir) for folder in self.all()}
        for folder in sorted(existing):
            problem = _write_problem(folder)
            if problem:
                raise ConfigError(
                    f"DATA_DIR={self.data_dir}: cannot write {folder} as uid {os.getuid()} (gid {os.getgid()}): "
                    f"{problem}; give the folder to that user (on the host: sudo chown -R {os.getuid()}:{os.getgid()} "
                    '<folder>) or run as its owner (docker run --user "$(id -u):$(id -g)" ...)')


def _nearest_existing(folder: Path, top: Path) -> Path:
    while folder != top and not folder.exists():
        folder = folder.parent
    return folder


def _write_problem(folder: Path) -> str | None:
    """Why a file cannot be created in FOLDER (made first if missing), or None; trying is the only sure test."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as problem:
        return problem.strerror or str(problem)
    return None


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
        return str(cores())
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
