"""Stage 02 on archives shaped like the published M-AILABS, MLS, VoxPopuli and VoxForge corpora, each with its
pitfalls (demo/corpus_synth.py says what the importer must make of every one)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile

from deepspeech_it.config import SPLITS, load_config
from deepspeech_it.data.corpora import CATALOGUE
from deepspeech_it.demo import corpus_synth
from deepspeech_it.pipeline import corpus_checks
from deepspeech_it.values import CORPORA as CORPORA_ACCEPTED

from conftest import run_script, source_variables


def import_one(data_dir: Path, corpus: str, variable: str, path: Path) -> Path:
    result = run_script("02_import_cv.py", data_dir, CORPORA=corpus, **{variable: str(path)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return data_dir / "data" / corpus


@pytest.fixture(scope="session")
def imported(tmp_path_factory, corpus_sources) -> dict[str, Path]:
    """Each corpus imported alone, in its own DATA_DIR."""
    return {name: import_one(tmp_path_factory.mktemp(f"data-{name}"), name, source.variable, source.path)
            for name, source in corpus_sources.items()}


def csv_rows(folder: Path) -> dict[str, list[dict]]:
    rows = {}
    for split in SPLITS:
        with open(folder / f"{split}.csv", newline="", encoding="utf-8") as handle:
            rows[split] = list(csv.DictReader(handle))
    return rows


def kept_splits(folder: Path) -> dict[str, str]:
    """wav name → split, over the three CSVs."""
    return {Path(row["wav_filename"]).name: split for split, rows in csv_rows(folder).items() for row in rows}


CORPORA = ("mailabs", "mls", "voxpopuli", "voxforge")


@pytest.mark.parametrize("corpus", CORPORA)
def test_keeps_exactly_the_clips_that_should_survive(corpus, imported, corpus_sources):
    manifest = corpus_sources[corpus].manifest
    found = kept_splits(imported[corpus])
    assert sorted(found) == sorted(manifest.kept)
    for name, split in manifest.kept.items():
        if split:  # official split kept
            assert found[name] == split, name
    for rows in csv_rows(imported[corpus]).values():
        for row in rows:
            wav = imported[corpus] / row["wav_filename"]
            info = soundfile.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert int(row["wav_filesize"]) == wav.stat().st_size and ":" not in row["wav_filename"]


@pytest.mark.parametrize("corpus", CORPORA)
def test_reports_every_rejection_and_skip_by_reason(corpus, imported, corpus_sources):
    manifest = corpus_sources[corpus].manifest
    report = json.loads((imported[corpus] / "import_report.json").read_text())
    rejected = Counter()
    for split in SPLITS:
        rejected.update(report["splits"][split]["rejected"])
    assert rejected == manifest.rejected
    assert report["skipped"] == dict(manifest.skipped)
    overall = json.loads((imported[corpus].parent.parent / "reports" / "import_report.json").read_text())
    assert overall["corpora"][corpus]["splits"]["train"]["kept"] == report["splits"]["train"]["kept"] > 0


@pytest.mark.parametrize("corpus", CORPORA)
def test_transcripts_come_from_the_raw_text_through_our_normaliser(corpus, imported, corpus_sources):
    expected = corpus_sources[corpus].manifest.transcripts
    transcripts = {Path(row["wav_filename"]).name: row["transcript"]
                   for rows in csv_rows(imported[corpus]).values() for row in rows}
    assert expected, "each synthetic corpus carries at least one pitfall in its text"
    for name, transcript in expected.items():
        assert transcripts[name] == transcript


@pytest.mark.parametrize("corpus", ("mailabs", "voxforge"))
def test_splits_without_an_official_one_keep_groups_whole(corpus, imported, corpus_sources):
    manifest = corpus_sources[corpus].manifest
    found = kept_splits(imported[corpus])
    splits_of_group: dict[str, set[str]] = {}
    for name, split in found.items():
        splits_of_group.setdefault(manifest.groups[name], set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of_group.values()), splits_of_group
    assert {"train", "test"} <= set(found.values())


def test_mailabs_mix_books_and_macos_junk(imported, corpus_sources):
    found = kept_splits(imported["mailabs"])
    assert any(name.startswith("novelleperunanno00") for name in found), "mix books have no reader and are kept"
    assert not list((imported["mailabs"] / "clips").glob("._*"))


def test_voxpopuli_cuts_only_the_sessions_it_needs(imported):
    extracted = imported["voxpopuli"].parent.parent / "extracted" / "voxpopuli"
    sessions = sorted(path.name for path in extracted.rglob("*.ogg"))
    assert sessions == ["20190115-0900-PLENARY-7_original.ogg", "20200210-0900-PLENARY-3_original.ogg"]


def test_voxpopuli_joins_the_vad_pieces(imported, corpus_sources):
    with gzip.open(corpus_sources["voxpopuli"].path / "asr_it.tsv.gz", "rt", encoding="utf-8") as handle:
        rows = {row["id_"]: row for row in csv.DictReader(handle, delimiter="|")}
    pieces = json.loads(rows["20190115-09:02:43_3"]["vad"])
    assert len(pieces) == 2, "the synthetic corpus has a segment of two pieces with a pause between them"
    clip = imported["voxpopuli"] / "clips" / "20190115-0900-PLENARY-7-20190115-09_02_43_3.wav"
    expected = sum(int(end * 16000) - int(start * 16000) for start, end in pieces)
    assert abs(soundfile.info(str(clip)).frames - expected) <= 2


def test_voxpopuli_processed_layout(tmp_path):
    folder = tmp_path / "voxpopuli"
    manifest = corpus_synth.build_voxpopuli(folder, layout="processed")
    out = import_one(tmp_path / "data", "voxpopuli", "VOXPOPULI_DIR", folder)
    assert kept_splits(out) == manifest.kept
    report = json.loads((out / "import_report.json").read_text())
    assert sum((Counter(report["splits"][s]["rejected"]) for s in SPLITS), Counter()) == manifest.rejected


def test_mls_flac_release(tmp_path):
    archive = tmp_path / "mls_italian.tar.gz"
    manifest = corpus_synth.build_mls(archive, codec="flac")
    out = import_one(tmp_path / "data", "mls", "MLS_ARCHIVE", archive)
    assert kept_splits(out) == manifest.kept


def test_unknown_corpus_is_one_line_and_exit_2(tmp_path):
    result = run_script("02_import_cv.py", tmp_path, CORPORA="cv librispeech")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "configuration error: CORPORA='cv librispeech': unknown corpus 'librispeech'; allowed: one or more of "
        "cv mailabs mls voxpopuli voxforge, each once"]


def test_missing_source_names_its_variable(tmp_path):
    result = run_script("02_import_cv.py", tmp_path, CORPORA="voxforge", VOXFORGE_DIR=str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "VOXFORGE_DIR=" in result.stderr and len(result.stderr.splitlines()) == 1


def test_every_corpus_the_configuration_accepts_is_described():
    assert tuple(CATALOGUE) == CORPORA_ACCEPTED
    assert load_config({"CORPORA": "voxforge,cv mls"}).corpora == ("cv", "mls", "voxforge")


def test_stage_01_checks_each_chosen_corpus(tmp_path, corpus_sources):
    variables = {"CORPORA": "mailabs mls voxpopuli voxforge", **source_variables(corpus_sources)}
    result = run_script("01_check_sources.py", tmp_path, **variables)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "[ok     ] corpora found: mailabs, mls, voxpopuli, voxforge" in lines
    mailabs = hashlib.sha256(corpus_sources["mailabs"].path.read_bytes()).hexdigest()
    assert any(line.startswith("[ok     ] M-AILABS") and mailabs in line for line in lines)
    assert any(line.startswith("[warning] Multilingual LibriSpeech") and "not a published MLS Italian md5" in line
               for line in lines)
    assert any(line.startswith("[warning] VoxForge") and "1 archive(s) cannot be opened" in line for line in lines)
    again = run_script("01_check_sources.py", tmp_path, **variables)
    assert again.stdout.count("(checksum cached)") == 4


def test_stage_01_names_what_is_missing(tmp_path, corpus_sources):
    result = run_script("01_check_sources.py", tmp_path, CORPORA="mls voxforge",
                        MLS_ARCHIVE=str(corpus_sources["mls"].path), VOXFORGE_DIR=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert any(line.startswith("[ERROR  ] VoxForge") and "VOXFORGE_DIR" in line for line in result.stdout.splitlines())
    assert "corpora found: mls; missing: voxforge" in result.stdout


def test_the_published_mls_md5s_are_recognised():
    finding = corpus_checks._judge("mls", {"mls_italian_opus.tar.gz": {"md5": "ca5a74d7e97cc62635022719e0ef529d",
                                                                        "sha256": "0" * 64}})
    assert finding.ok and "mls_italian_opus.tar.gz (Opus)" in finding.message


def test_model_card_lists_each_corpus_with_its_licence_and_hours():
    from deepspeech_it.export.release import model_card

    meta = {"name": "m", "language": "it", "licence": "MPL-2.0", "tflite": {"quantized": True}, "lm_alpha": 1,
            "lm_beta": 1, "beam_width": 8, "verified_with": {}, "versions": {}, "training": {}, "test": None,
            "tensorflow_graphs": {}, "loaded_by": {},
            "data": {"source": "Common Voice x, VoxForge, Italian", "evaluation": "dev and test sets of Common Voice",
                     "corpora": [{"source": "Common Voice x", "licence": "CC0 1.0",
                                  "splits": {"train": {"clips": 5, "hours": 0.5}, "dev": {"clips": 1, "hours": 0.1},
                                             "test": {"clips": 1, "hours": 0.2}}},
                                 {"source": "VoxForge, Italian", "licence": "GPL",
                                  "splits": {"train": {"clips": 3, "hours": 0.3}}}],
                     "corpus_tests": {"voxforge": {"utterances": 2, "wer": 0.5, "cer": 0.25}}}}
    card = model_card(meta)
    assert "| Common Voice x | CC0 1.0 | 5 | 0.5 | 0.1 | 0.2 |" in card
    assert "| VoxForge, Italian | GPL | 3 | 0.3 | - | - |" in card
    assert "| voxforge | 2 | 50.00 % | 25.00 % |" in card


def test_a_libsndfile_without_the_ogg_codec_is_reported(monkeypatch):
    monkeypatch.setattr(corpus_checks.soundfile, "available_subtypes", lambda container: {})
    [finding] = corpus_checks._decoder("mls", Path("mls_italian_opus.tar.gz"))
    assert not finding.ok and finding.blocking and "Opus" in finding.message
    assert corpus_checks._decoder("mls", Path("mls_italian.tar.gz")) == []
    assert "Vorbis" in corpus_checks._decoder("voxpopuli", Path("voxpopuli"))[0].message
