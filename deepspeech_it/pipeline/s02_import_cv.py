"""Stage 02 as the pipeline runs it: every chosen corpus extracted and read, the leak guards applied across them,
then each corpus converted (resumable, skipped when its plan is unchanged), reported and recorded."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

from deepspeech_it.config import IMPORT_REPORT_FILE, SPLITS, Config
from deepspeech_it.data import clips, textnorm
from deepspeech_it.data.clips import ClipTask, SplitReport
from deepspeech_it.data.corpora import CATALOGUE, planning_order
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.data.splits import guard_recordings, guard_sentences, official_recording_splits
from deepspeech_it.data.textnorm import Normalizer, Rejected
from deepspeech_it.pipeline.corpus_sources import corpus_rows
from deepspeech_it.pipeline.records import StageRecord, fingerprint
from deepspeech_it.pipeline.runner import StageError
from deepspeech_it.util.atomic import write_json_atomic
from deepspeech_it.util.progress import bars_wanted

PARAMS = ("MAX_SECS", "ENGLISH_COMPATIBLE", "MODEL_LANGUAGE")
GUARD_SENTENCES = "train clips removed: sentence of a dev/test set"
GUARD_RECORDINGS = "train clips removed: LibriVox reading in another corpus's dev/test"


def import_cv(config: Config) -> int:
    layout = config.layout
    layout.create()
    show = bars_wanted(config.progress)
    started = time.monotonic()
    plans, reports, skipped, origins = plan_corpora(config, show)
    guards = {GUARD_SENTENCES: guard_sentences(plans, reports, _user_held_out(config)),
              GUARD_RECORDINGS: guard_recordings(plans, reports)}
    for corpus in config.corpora:
        reports[corpus] = _convert(config, corpus, plans[corpus], reports[corpus], skipped[corpus], origins[corpus],
                                   show)
    print(clips.format_report(reports))
    for corpus, counts in skipped.items():
        for reason, count in sorted(counts.items()):
            print(f"  {corpus}: {count} skipped before any split: {reason}")
    for guard, removed in guards.items():
        if any(removed.values()):
            print(f"  {guard}: " + ", ".join(f"{corpus} {n}" for corpus, n in removed.items() if n))
    summary = {
        "corpora": {corpus: {"title": CATALOGUE[corpus].title, "licence": CATALOGUE[corpus].licence,
                             "source": str(origins[corpus]), "skipped": dict(skipped[corpus]),
                             "splits": {split: r.as_dict() for split, r in reports[corpus].items()}}
                    for corpus in config.corpora},
        "guards": guards,
        "seconds": round(time.monotonic() - started, 1),
        "configuration": {name: config.as_dict()[name] for name in PARAMS + ("CORPORA",)},
    }
    write_json_atomic(layout.import_report, summary)
    if not sum(reports[corpus]["train"].kept for corpus in config.corpora):
        raise StageError("no training clip survived the import; see the table above for the reasons")
    print("stage 02: " + "; ".join(f"{corpus} " + ", ".join(f"{r.kept} {split}" for split, r in reports[corpus].items())
                                    for corpus in config.corpora) + f" clips ({summary['seconds']:.0f} s)")
    return 0


def plan_corpora(config: Config, show: bool):
    """Every chosen corpus read and normalised: clip tasks, per-split rejections so far, corpus-level skips."""
    normalizer = Normalizer(config.alphabet, config.english_compatible)
    plans, reports, skipped, origins = {}, {}, {}, {}
    preferred: dict[str, str] = {}
    for corpus in planning_order(config.corpora):
        rows, skipped[corpus], origins[corpus] = corpus_rows(corpus, config, show, preferred)
        reports[corpus] = clips.new_reports()
        plans[corpus] = clips.plan_rows(rows, config.layout.corpus_dir(corpus) / "clips", normalizer,
                                        reports[corpus])
        if corpus == "mls":
            preferred = official_recording_splits(plans[corpus])
    order = list(config.corpora)
    return tuple({c: table[c] for c in order} for table in (plans, reports, skipped, origins))


def _user_held_out(config: Config) -> set[str]:
    """Transcripts of DEV_FILES and TEST_FILES, which no train set may hold either."""
    normalizer = Normalizer(config.alphabet, config.english_compatible)
    held = set()
    for path in (*config.dev_files, *config.test_files):
        for row in read_rows(path):
            try:
                held.add(normalizer.normalize(row.transcript))
            except Rejected:
                continue
    return held


def _plan_digest(tasks: list[ClipTask]) -> str:
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(f"{task.split}\t{task.source}\t{task.target.name}\t{task.transcript}\t{task.pieces}\n".encode())
    return digest.hexdigest()


def _convert(config: Config, corpus: str, tasks: list[ClipTask], reports: dict[str, SplitReport], skipped: Counter,
             origin: Path, show: bool) -> dict[str, SplitReport]:
    """Converts one corpus, unless the very same clips were converted with the same settings before."""
    out = config.layout.corpus_dir(corpus)
    params = {name: config.as_dict()[name] for name in PARAMS}
    params.update(plan=_plan_digest(tasks), rejected={split: dict(r.rejected) for split, r in reports.items()},
                  skipped=dict(skipped))
    fp = fingerprint(params, [config.alphabet_path, Path(textnorm.__file__)])
    record = StageRecord(out, "import_cv")
    if record.is_current(fp):
        print(f"stage 02: {out} is up to date, skipped")
        return {split: SplitReport.from_dict(value) for split, value in record.read()["summary"].items()}
    record.mark_running(fp)
    print(f"importing {CATALOGUE[corpus].title} ({len(tasks)} clips) -> {out} with {config.import_jobs} process(es)")
    started = time.monotonic()
    clips.convert_and_write(tasks, out, reports, config.max_secs, config.import_jobs, show)
    splits = {split: report.as_dict() for split, report in reports.items()}
    write_json_atomic(out / IMPORT_REPORT_FILE, {"source": str(origin), "splits": splits,
                                          "skipped": dict(skipped), "seconds": round(time.monotonic() - started, 1),
                                          "configuration": {name: config.as_dict()[name] for name in PARAMS}})
    outputs = [config.layout.split_csv(corpus, split) for split in SPLITS] + [out / IMPORT_REPORT_FILE]
    record.mark_done(fp, outputs=outputs, summary=splits)
    return reports
