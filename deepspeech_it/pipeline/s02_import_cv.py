"""Stage 02 as the pipeline runs it: extract (resumable), import (resumable), report, record."""

from __future__ import annotations

import time
from pathlib import Path

from deepspeech_it.config import IMPORT_REPORT_FILE, SPLITS, Config
from deepspeech_it.data import commonvoice, textnorm
from deepspeech_it.data.textnorm import Normalizer
from deepspeech_it.pipeline.records import StageRecord, fingerprint
from deepspeech_it.pipeline.runner import StageError
from deepspeech_it.util.atomic import write_json_atomic
from deepspeech_it.util.progress import bars_wanted


def import_cv(config: Config) -> int:
    layout = config.layout
    layout.create()
    archive = config.require_file("CV_ARCHIVE")
    show = bars_wanted(config.progress)
    corpus_dir = extract(archive, layout.extracted, config.model_language, show)
    record = StageRecord(layout.cv_dir, "import_cv")
    params = {name: config.as_dict()[name] for name in ("MAX_SECS", "ENGLISH_COMPATIBLE", "MODEL_LANGUAGE")}
    inputs = [corpus_dir / f"{split}.tsv" for split in SPLITS]
    missing = [path.name for path in inputs if not path.is_file()]
    if missing:
        raise StageError(f"{corpus_dir} has no {', '.join(missing)}; is CV_ARCHIVE a complete Common Voice archive?")
    fp = fingerprint(params, inputs + [config.alphabet_path, Path(textnorm.__file__)])
    if record.is_current(fp):
        print(f"stage 02: {layout.cv_dir} is up to date, skipped")
        return 0
    record.mark_running(fp)
    started = time.monotonic()
    print(f"importing {corpus_dir} -> {layout.cv_dir} with {config.import_jobs} process(es)")
    reports = commonvoice.import_corpus(corpus_dir, layout.cv_dir, Normalizer(config.alphabet, config.english_compatible),
                                        config.max_secs, config.import_jobs, show)
    print(commonvoice.format_report(reports))
    summary = {
        "source": str(corpus_dir),
        "splits": {split: report.as_dict() for split, report in reports.items()},
        "seconds": round(time.monotonic() - started, 1),
        "configuration": params,
    }
    write_json_atomic(layout.cv_dir / IMPORT_REPORT_FILE, summary)
    outputs = [layout.cv_dir / f"{split}.csv" for split in SPLITS]
    record.mark_done(fp, outputs=outputs + [layout.cv_dir / IMPORT_REPORT_FILE], summary=summary["splits"])
    if not reports["train"].kept:
        raise StageError("no training clip survived the import; see the table above for the reasons")
    print(f"stage 02: {', '.join(f'{r.kept} {split}' for split, r in reports.items())} clips in {layout.cv_dir} "
          f"({summary['seconds']:.0f} s)")
    return 0


def extract(archive: Path, extracted: Path, language: str, show: bool) -> Path:
    """Extracts ARCHIVE once (resuming an interrupted extraction) and returns the folder holding the TSVs."""
    record = StageRecord(extracted, "extract")
    fp = fingerprint({}, [archive])
    if record.is_current(fp):
        print(f"stage 02: {archive.name} already extracted, skipped")
    else:
        record.mark_running(fp)
        print(f"extracting {archive} -> {extracted}")
        report = commonvoice.extract_archive(archive, extracted, show)
        for reason, count in sorted(report.skipped.items()):
            print(f"  skipped {count} archive member(s): {reason}")
        print(f"  {report.files} file(s) written, {report.reused} already there")
        record.mark_done(fp, summary={"files": report.files, "reused": report.reused, "skipped": dict(report.skipped)})
    corpus_dir = commonvoice.find_corpus_dir(extracted, language)
    if corpus_dir is None:
        raise StageError(f"no train.tsv in {extracted} (neither at the top nor in cv-corpus-*/{language}/); "
                         "is CV_ARCHIVE a Common Voice archive?")
    return corpus_dir
