"""Stage 03 as the pipeline runs it: corpus, vocabulary, KenLM model, scorer package, report, record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from deepspeech_it.config import LM_REPORT_FILE, Config
from deepspeech_it.data import commonvoice, textnorm
from deepspeech_it.data.corpora import held_out_csvs, training_csvs
from deepspeech_it.lm.build import LmInputs, build, format_report
from deepspeech_it.lm.corpus import check_text
from deepspeech_it.lm.kenlm_tools import KenLMError, kenlm_programs
from deepspeech_it.lm.scorer import set_default_alpha_beta
from deepspeech_it.paths import KENLM_BIN
from deepspeech_it.pipeline.records import StageRecord, fingerprint
from deepspeech_it.pipeline.runner import StageError
from deepspeech_it.util.atomic import write_json_atomic

STAGE = "build_lm"
# Parameters that only reach the scorer's header: changing them rewrites 16 bytes, not the model.
HEADER_PARAMS = ("LM_ALPHA", "LM_BETA")
PARAMS = ("LM_ORDER", "LM_PRUNE", "LM_TOP_K", "LM_KEEP_ARPA", "ENGLISH_COMPATIBLE") + HEADER_PARAMS


def build_lm(config: Config) -> int:
    layout = config.layout
    layout.create()
    lm_dir = layout.lm
    inputs = stage_inputs(config)
    params = {name: config.as_dict()[name] for name in PARAMS}
    params["KENLM"] = _kenlm_version()
    fp = fingerprint(params, inputs.corpus_files + inputs.held_out + [config.alphabet_path, Path(textnorm.__file__)])
    record = StageRecord(lm_dir, STAGE)
    scorer_path = layout.scorer
    if record.is_current(fp):
        print(f"stage 03: {scorer_path} is up to date, skipped")
        return 0
    if _only_header_changed(record, fp):
        set_default_alpha_beta(scorer_path, config.lm_alpha, config.lm_beta)
        report = json.loads((lm_dir / LM_REPORT_FILE).read_text(encoding="utf-8"))
        report["scorer"].update(alpha=config.lm_alpha, beta=config.lm_beta)
        write_json_atomic(lm_dir / LM_REPORT_FILE, report)
        previous = record.read()
        record.mark_done(fp, outputs=previous["outputs"], summary=previous["summary"])
        print(f"stage 03: only LM_ALPHA/LM_BETA changed; rewrote the header of {scorer_path}")
        return 0
    try:
        programs = kenlm_programs()
    except KenLMError as problem:
        raise StageError(str(problem)) from None
    record.mark_running(fp)
    work = layout.tmp / "lm"
    shutil.rmtree(work, ignore_errors=True)  # leftovers of an interrupted run
    work.mkdir(parents=True)
    try:
        report = build(config, programs, inputs, work)
    except KenLMError as problem:
        raise StageError(f"{problem} (logs in {work})") from None
    shutil.rmtree(work, ignore_errors=True)
    outputs = [lm_dir / name for name in report["outputs"].values()]
    record.mark_done(fp, outputs=outputs, summary={key: report[key] for key in ("corpus", "vocabulary", "kenlm")})
    print(format_report(report))
    return 0


def stage_inputs(config: Config) -> LmInputs:
    csvs = training_csvs(config)
    held_out = held_out_csvs(config)
    missing = [str(path) for path in csvs["train"] + held_out if not path.is_file()]
    if missing:
        raise StageError(f"{', '.join(missing)} missing; run stage 02 (make import-cv) first")
    for text in config.lm_sources:
        check_text(text)
    sentences = validated_sentences_file(config) if "cv" in config.corpora else None
    return LmInputs(transcripts=csvs["train"], texts=list(config.lm_sources),
                    cv_sentences=[sentences] if sentences else [], held_out=held_out)


def validated_sentences_file(config: Config) -> Path | None:
    corpus_dir = commonvoice.find_corpus_dir(config.layout.extracted, config.model_language)
    if corpus_dir is None or not (corpus_dir / "validated_sentences.tsv").is_file():
        return None
    return corpus_dir / "validated_sentences.tsv"


def _kenlm_version() -> str:
    stamp = KENLM_BIN / ".kenlm-version"
    return stamp.read_text().strip() if stamp.is_file() else "from PATH"


def _only_header_changed(record: StageRecord, fp: dict) -> bool:
    previous = record.read()
    if not previous or previous.get("status") != "done" or not all(Path(p).exists() for p in previous["outputs"]):
        return False
    old = previous["fingerprint"]
    return old["inputs"] == fp["inputs"] and _model_params(old["params"]) == _model_params(fp["params"])


def _model_params(params: dict) -> dict:
    return {name: value for name, value in params.items() if name not in HEADER_PARAMS}
