"""Stage 06 as the pipeline runs it: TFLite, frozen TensorFlow graph (.pb, .pbmm) and SavedModel export, proof in
the real clients, release archives."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from deepspeech_it.config import (ALPHABET_FILE, IMPORT_REPORT_FILE, PB_FILE, PBMM_FILE, SCORER_FILE, SPLITS,
                                   TFLITE_FILE, Config)
from deepspeech_it.data.corpora import CATALOGUE
from deepspeech_it.demo.synth import SYNTHETIC_RELEASE
from deepspeech_it.export import client_libraries, frozen_graph, graph, memmapped, native_clients, release
from deepspeech_it.lm.scorer import read_scorer
from deepspeech_it.model import checkpoint
from deepspeech_it.pipeline.records import StageRecord, fingerprint
from deepspeech_it.pipeline.runner import StageError
from deepspeech_it.util.atomic import atomic_path, write_bytes_atomic
from deepspeech_it.util.tf_runtime import exact_float32

MODEL_NAME = "DeepSpeech 0.9.3-compatible speech-to-text model"
TRAINING_FLAGS = ("n_hidden", "epochs", "batch_size", "learning_rate", "dropout", "early_stop", "es_epochs",
                  "reduce_lr_on_plateau", "transfer_learning", "drop_source_layers", "random_seed", "max_secs",
                  "english_compatible", "amp")
VERSIONED_PACKAGES = ("tensorflow", "numpy", "ai-edge-litert", "kenlm", "soundfile", "soxr")
ARCHIVES = ("model_tflite_it.tar.xz", "checkpoint_it.tar.xz", "model_savedmodel_it.tar.xz")
PBMM_ARCHIVE = "model_pbmm_it.tar.xz"      # for the TensorFlow client; only when the .pbmm loaded in it


def export(config: Config) -> int:
    # What the export computes and checks (the graph's constants, the clients' evidence) must be float32 as the
    # CPU clients compute it, not TensorFloat-32 on a training GPU.
    exact_float32()
    layout = config.layout
    layout.create()
    models = layout.models
    try:
        prefix = checkpoint.resolve_checkpoint(layout.checkpoints)
    except checkpoint.CheckpointError as problem:
        raise StageError(f"{problem}; run `make train-model` first") from None
    scorer = layout.scorer
    if not scorer.is_file():
        raise StageError(f"{scorer} does not exist; run `make build-lm` (and `make evaluate-lm`) first")
    for client in native_clients.RELEASES:
        client_libraries.library_paths(client)
    checkpoint_files = checkpoint.bundle_files(prefix)
    companions = [p for p in (layout.checkpoints / n for n in ("flags.json", "flags.txt", ALPHABET_FILE)) if p.exists()]
    reports = [p for p in (layout.reports / "test_scorer.json", layout.lm / "best_alpha_beta.json") if p.exists()]
    params = {name: config.as_dict()[name] for name in ("BEAM_WIDTH", "EXPORT_QUANTIZE", "MODEL_LANGUAGE",
                                                          "ENGLISH_COMPATIBLE")}
    record = StageRecord(models, "export")
    code = [Path(module.__file__) for module in (graph, frozen_graph, memmapped)]
    fp = fingerprint(params, checkpoint_files + companions + reports + [scorer, config.alphabet_path] + code)
    if record.is_current(fp):
        print(f"stage 06: {models} is up to date, skipped")
        return 0
    header = read_scorer(scorer)            # a damaged scorer stops the stage before the export's work
    record.mark_running(fp)
    started = time.monotonic()
    alphabet = config.alphabet

    print(f"exporting {prefix}")
    weights = checkpoint.load_weights_by_ds_name(prefix)
    tflite, quantized, verified, note = build_tflite(weights, alphabet, config.beam_width, config.export_quantize,
                                                     scorer, layout.tmp)
    write_bytes_atomic(models / TFLITE_FILE, tflite)
    print(f"  output_graph.tflite: {len(tflite) / 1e6:.1f} MB, {'quantised' if quantized else 'float'}; {note}")
    tensorflow = build_tensorflow_graphs(weights, alphabet, config.beam_width, config.model_language, scorer,
                                         layout.tmp)
    for name, (data, report) in tensorflow.items():
        if data is None:
            (models / name).unlink(missing_ok=True)       # never leave a file of an earlier export behind
        else:
            write_bytes_atomic(models / name, data)
        print(f"  {name}: {report['note']}")
    with atomic_path(models / "saved_model", directory=True) as temp:
        graph.save_saved_model(weights, alphabet, temp)
    with atomic_path(models / SCORER_FILE) as temp:
        shutil.copyfile(scorer, temp)
    write_bytes_atomic(models / ALPHABET_FILE, config.alphabet_path.read_bytes())

    test_report = layout.reports / "test_scorer.json"
    test = json.loads(test_report.read_text()) if test_report.is_file() else None
    meta = {
        "name": f"{MODEL_NAME} ({config.model_language})",
        "language": config.model_language,
        "licence": release.LICENCE,
        "checkpoint": prefix.name,
        "beam_width": config.beam_width,
        "lm_alpha": header.alpha,
        "lm_beta": header.beta,
        "tflite": {**graph.describe_tflite(tflite), "quantized": quantized, "quantization_note": note},
        "sample_rate": graph.SAMPLE_RATE,
        "feature_win_len_ms": graph.FEATURE_WIN_LEN_MS,
        "feature_win_step_ms": graph.FEATURE_WIN_STEP_MS,
        "graph_version": graph.GRAPH_VERSION,
        "data": corpora_data(config),
        "training": training_flags(layout.checkpoints / "flags.json", config,
                                   graph.Geometry.of(weights, alphabet).n_hidden),
        "test": test,
        "verified_with": verified,
        "tensorflow_graphs": {name: report for name, (_, report) in tensorflow.items()},
        "loaded_by": {TFLITE_FILE: sorted(verified),
                      **{name: sorted(report["verified_with"]) for name, (_, report) in tensorflow.items()}},
        "versions": release.package_versions(VERSIONED_PACKAGES),
    }
    release.write_metadata(models, meta)
    print("  writing release archives")
    write_archives(models, prefix, checkpoint_files, companions, config.alphabet_path, config.progress)
    archives = list(ARCHIVES)
    if tensorflow[PBMM_FILE][0] is not None:
        release.write_tar_xz(models / PBMM_ARCHIVE, [release.ArchiveMember(name, models / name) for name in
                                                     (PBMM_FILE, SCORER_FILE, ALPHABET_FILE, "MODEL_CARD.md")],
                             config.progress)
        archives.append(PBMM_ARCHIVE)
    else:
        (models / PBMM_ARCHIVE).unlink(missing_ok=True)
    sums = release.write_sha256sums(models / "SHA256SUMS", [models / name for name in archives])
    for name, digest in sums.items():
        print(f"  {digest}  {name}")
    released = [name for name, (data, _) in tensorflow.items() if data is not None]
    outputs = [models / n for n in [TFLITE_FILE, "saved_model", SCORER_FILE, ALPHABET_FILE, "metadata.json",
                                    "MODEL_CARD.md", "SHA256SUMS"] + released + archives]
    record.mark_done(fp, outputs=outputs, summary={"quantized": quantized, "loaded_by": meta["loaded_by"],
                                                   "seconds": round(time.monotonic() - started, 1)})
    print(f"stage 06 done in {time.monotonic() - started:.0f} s")
    return 0


def corpora_data(config: Config) -> dict:
    """What the model card says about the data: each corpus with its licence, clips and hours per split, its own
    test result when stage 04 scored it, and which sets the model was tuned and tested on."""
    layout = config.layout
    corpora = [{"name": corpus, "title": CATALOGUE[corpus].title, "licence": CATALOGUE[corpus].licence,
                "source": (corpus_source(layout.cv_dir / IMPORT_REPORT_FILE, config.cv_archive) if corpus == "cv"
                           else CATALOGUE[corpus].title),
                "splits": release.corpus_hours(layout.split_csv(corpus, split) for split in SPLITS)}
               for corpus in config.corpora]
    tests = {corpus: json.loads(path.read_text()) for corpus in config.corpora
             if (path := layout.corpus_test_report(corpus)).is_file()}
    # Named as the import saw them: the demo's synthetic data is not Common Voice, whatever its shape.
    evaluated_on = next((c["source"] for c in corpora if c["name"] == "cv"), "every chosen corpus")
    extra = " (plus DEV_FILES/TEST_FILES)" if config.dev_files or config.test_files else ""
    return {"source": "; ".join(c["source"] for c in corpora), "corpora": corpora,
            "corpus_tests": {corpus: {k: report[k] for k in ("utterances", "wer", "cer")}
                             for corpus, report in tests.items()},
            "evaluation": f"dev and test sets of {evaluated_on}{extra}"}


def corpus_source(import_report: Path, archive: Path) -> str:
    """The Common Voice release the corpus came from: the cv-corpus-* folder stage 02 imported, else the archive."""
    if import_report.exists():
        source = Path(json.loads(import_report.read_text()).get("source", ""))
        release_dirs = [part for part in source.parts if part.startswith("cv-corpus")]
        if release_dirs and release_dirs[-1] == SYNTHETIC_RELEASE:
            return "a synthetic Italian corpus spoken by espeak-ng in Common Voice's shape (the project's demo data)"
        if release_dirs:
            return f"Common Voice {release_dirs[-1]}"
    return f"Common Voice ({archive.name})"


def training_flags(flags_json: Path, config: Config, n_hidden: int) -> dict:
    """The hyper-parameters the checkpoint was trained with (its flags.json), else the current configuration."""
    flags = json.loads(flags_json.read_text()) if flags_json.exists() else {}
    chosen = {name: flags.get(name, flags.get(name.upper(), config.as_dict()[name.upper()])) for name in TRAINING_FLAGS}
    chosen["n_hidden"] = n_hidden          # the weights decide, whatever a flags file says
    return chosen


def build_tflite(weights, alphabet, beam_width: int, quantize: bool, scorer: Path,
                 tmp_dir: Path) -> tuple[bytes, bool, dict[str, str], str]:
    """The TFLite model to release, whether it is quantised, the clients' evidence, and a note on the choice.

    A quantised model is released only if both clients load it; otherwise the float model, with the reason.
    """
    inference_graph, inputs, outputs = graph.build_inference_graph(weights, alphabet, beam_width)
    candidates = [True, False] if quantize else [False]
    refusals = []
    for quantized in candidates:
        model = graph.convert_to_tflite(inference_graph, inputs, outputs, quantize=quantized)
        with atomic_path(tmp_dir / "candidate.tflite") as candidate:
            candidate.write_bytes(model)
            try:
                verified = native_clients.verify_model(candidate, scorer, expected_beam_width=beam_width)
            except native_clients.NativeClientError as problem:
                refusals.append(f"{'quantised' if quantized else 'float'} model refused: {problem}")
                continue
        note = "loaded by both clients" if not refusals else "; ".join(refusals) + "; float model released"
        return model, quantized, verified, note
    raise StageError("; ".join(refusals))


def build_tensorflow_graphs(weights, alphabet, beam_width: int, language: str, scorer: Path,
                            tmp_dir: Path) -> dict[str, tuple[bytes | None, dict]]:
    """output_graph.pb and .pbmm, each with its report; a file's bytes are None unless the TensorFlow client loaded
    it with the scorer (and memory-mapped the .pbmm), so only what a client loaded is released."""
    graph_def = frozen_graph.build_frozen_graph(weights, alphabet, beam_width, language)
    package = memmapped.to_memmapped(graph_def)
    details = {PB_FILE: frozen_graph.describe_graph(graph_def),
               PBMM_FILE: {"memory_mapped_regions": len(memmapped.read_directory(package)) - 1}}
    results = {}
    for name, data in ((PB_FILE, graph_def.SerializeToString()), (PBMM_FILE, package)):
        # The candidate keeps the file's name: the client memory-maps exactly the paths that contain ".pbmm".
        with atomic_path(tmp_dir / "candidate" / name) as candidate:
            candidate.write_bytes(data)
            try:
                verified = native_clients.verify_tensorflow_graph(candidate, scorer, expected_beam_width=beam_width)
                note = f"{len(data) / 1e6:.1f} MB, loaded by " + ", ".join(verified)
            except native_clients.NativeClientError as problem:
                data, verified, note = None, {}, f"not released: {problem}"
        results[name] = (data, {**details[name], "released": data is not None, "verified_with": verified,
                                "note": note})
    return results


def write_archives(models: Path, prefix: Path, checkpoint_files: list[Path], companions: list[Path],
                   alphabet_path: Path, show_progress: bool) -> None:
    release.write_tar_xz(models / "model_tflite_it.tar.xz", [
        release.ArchiveMember(name, models / name)
        for name in (TFLITE_FILE, SCORER_FILE, ALPHABET_FILE, "MODEL_CARD.md")], show_progress)
    # Both state files name the bundle, so DeepSpeech's "best" and "last" lookups and ours find it.
    state = checkpoint.state_file_text([prefix]).encode()
    members = [release.ArchiveMember(f.name, f) for f in checkpoint_files]
    members += [release.ArchiveMember(checkpoint.BEST_STATE_FILE, data=state),
                release.ArchiveMember(checkpoint.TRAIN_STATE_FILE, data=state)]
    members += [release.ArchiveMember(f.name, f) for f in companions]
    if not any(f.name == ALPHABET_FILE for f in companions):
        members.append(release.ArchiveMember(ALPHABET_FILE, alphabet_path))
    release.write_tar_xz(models / "checkpoint_it.tar.xz", members, show_progress)
    release.write_tar_xz(models / "model_savedmodel_it.tar.xz", [
        release.ArchiveMember("saved_model", models / "saved_model"),
        release.ArchiveMember(ALPHABET_FILE, models / ALPHABET_FILE),
        release.ArchiveMember("MODEL_CARD.md", models / "MODEL_CARD.md")], show_progress)
