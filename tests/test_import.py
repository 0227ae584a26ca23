import csv
import json
from pathlib import Path

import pytest
import soundfile

from deepspeech_it.config import SPLITS
from deepspeech_it.data import archive, clips, commonvoice, csvfile
from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.textnorm import Normalizer
from deepspeech_it.demo.synth import build_archive
from deepspeech_it.paths import ALPHABET_DIR

from conftest import run_script

NORMALIZER = Normalizer(Alphabet.from_file(ALPHABET_DIR / "it.txt"))


def _rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_splits_hold_exactly_the_clips_that_should_survive(imported_corpus, cv_archive):
    for split in SPLITS:
        rows = _rows(imported_corpus / f"{split}.csv")
        expected = sorted(Path(u.clip).stem + ".wav" for u in cv_archive.manifest.kept[split])
        assert sorted(Path(r["wav_filename"]).name for r in rows) == expected
        for row in rows:
            wav = imported_corpus / row["wav_filename"]
            assert not Path(row["wav_filename"]).is_absolute()
            assert int(row["wav_filesize"]) == wav.stat().st_size
            info = soundfile.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_report_counts_every_rejection_by_reason(imported_corpus, cv_archive):
    report = json.loads((imported_corpus / "import_report.json").read_text())
    for split in SPLITS:
        assert report["splits"][split]["rejected"] == cv_archive.manifest.rejected[split]
        assert report["splits"][split]["kept"] == len(cv_archive.manifest.kept[split])


def test_transcripts_are_normalised(imported_corpus):
    transcripts = {Path(r["wav_filename"]).stem: r["transcript"] for r in _rows(imported_corpus / "train.csv")}
    assert transcripts["common_voice_it_digits"] == "ho comprato tre mele e dodici pere nel duemilaventuno"
    assert transcripts["common_voice_it_quotes"] == "l'insegnante disse bravo a tutti"
    dev = {Path(r["wav_filename"]).stem for r in _rows(imported_corpus / "dev.csv")}
    assert "common_voice_it_stereo" in dev


def test_stereo_clip_is_down_mixed(imported_corpus):
    samples, rate = soundfile.read(str(imported_corpus / "clips" / "common_voice_it_stereo.wav"), dtype="int16")
    assert rate == 16000 and samples.ndim == 1 and abs(samples).max() > 1000


def test_unsafe_members_never_leave_the_folder(imported_corpus, cv_archive):
    data_dir = imported_corpus.parent.parent
    record = json.loads((data_dir / "extracted" / "extract.stage.json").read_text())
    assert record["summary"]["skipped"] == cv_archive.manifest.unsafe_members
    assert not (data_dir / "escaped.txt").exists() and not (data_dir.parent / "escaped.txt").exists()
    assert not Path("/tmp/absolute-escape.txt").exists()
    assert not list((data_dir / "extracted").rglob("link-out"))


def test_rerun_is_skipped(imported_corpus, cv_archive):
    data_dir = imported_corpus.parent.parent
    before = (imported_corpus / "train.csv").stat().st_mtime_ns
    result = run_script("02_import_cv.py", data_dir, CV_ARCHIVE=str(cv_archive.path))
    assert result.returncode == 0 and "up to date, skipped" in result.stdout
    assert (imported_corpus / "train.csv").stat().st_mtime_ns == before


def test_changed_parameter_reruns(tmp_path, cv_archive):
    data_dir = tmp_path / "data"
    first = run_script("02_import_cv.py", data_dir, CV_ARCHIVE=str(cv_archive.path))
    assert first.returncode == 0
    again = run_script("02_import_cv.py", data_dir, CV_ARCHIVE=str(cv_archive.path), MAX_SECS="2")
    assert again.returncode == 0 and "up to date, skipped" not in again.stdout
    report = json.loads((data_dir / "data" / "cv-it" / "import_report.json").read_text())
    assert report["splits"]["train"]["rejected"].get("longer than MAX_SECS", 0) > 1


def test_old_layout_and_old_columns(tmp_path):
    archive = tmp_path / "it.tar.gz"
    manifest = build_archive(archive, layout="old", per_split={"train": 3, "dev": 1, "test": 1})
    result = run_script("02_import_cv.py", tmp_path / "data", CV_ARCHIVE=str(archive))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "extracted" / "train.tsv").is_file()
    assert len(_rows(tmp_path / "data" / "data" / "cv-it" / "train.csv")) == len(manifest.kept["train"])


def test_interrupted_import_resumes(tmp_path, cv_archive, monkeypatch):
    data_dir = tmp_path / "data"
    extracted = data_dir / "extracted"
    archive.extract_archive(cv_archive.path, extracted, show_progress=False)
    corpus = commonvoice.find_corpus_dir(extracted, "it")
    out = data_dir / "data" / "cv-it"
    real_convert, converted = clips.convert_to_wav, []

    def convert_then_die(source, target, pieces=()):
        if len(converted) == 10:
            raise KeyboardInterrupt
        converted.append(Path(target))
        return real_convert(source, target, pieces)

    monkeypatch.setattr(clips, "convert_to_wav", convert_then_die)
    reports = clips.new_reports()
    tasks = clips.plan_rows(commonvoice.read_rows(corpus), out / "clips", NORMALIZER, reports)
    with pytest.raises(KeyboardInterrupt):
        clips.convert_and_write(tasks, out, reports, 10, jobs=1, show_progress=False)
    monkeypatch.undo()
    assert not (out / "train.csv").exists(), "an interrupted import must not leave a CSV behind"
    assert not list((out / "clips").glob(".*.tmp"))
    first_run = {path: path.stat().st_mtime_ns for path in converted}

    result = run_script("02_import_cv.py", data_dir, CV_ARCHIVE=str(cv_archive.path))
    assert result.returncode == 0, result.stderr
    assert {path: path.stat().st_mtime_ns for path in converted} == first_run, "converted clips are reused"
    assert len(_rows(out / "train.csv")) == len(cv_archive.manifest.kept["train"])


def test_too_short_rule_is_deepspeechs():
    assert clips.too_short(frames=16000, transcript="x" * 51)
    assert not clips.too_short(frames=16000, transcript="x" * 50)


def test_validator_accepts_the_import_and_names_each_problem(imported_corpus, tmp_path):
    alphabet = NORMALIZER.alphabet
    for split in SPLITS:
        assert csvfile.validate(imported_corpus / f"{split}.csv", alphabet) == []
    rows = _rows(imported_corpus / "train.csv")
    broken = tmp_path / "train.csv"
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "short.wav").write_bytes(b"RIFF")
    with open(broken, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csvfile.CSV_FIELDS)
        writer.writerow(["clips/gone.wav", "10", rows[0]["transcript"]])
        writer.writerow(["clips/short.wav", "99", "ciao"])
        writer.writerow(["clips/short.wav", "4", "ciao 3"])
    problems = csvfile.validate(broken, alphabet)
    assert len(problems) == 4
    assert "gone.wav does not exist" in problems[0] and "size" in problems[1]
    assert "short.wav is not a 16 kHz mono 16-bit wav" in problems[2] and "not encodable" in problems[3]
    assert csvfile.validate(tmp_path / "nothing.csv", alphabet)[0].endswith("run stage 02 (make import-cv)")


def test_a_canonical_training_wav_is_copied_and_anything_else_converted(tmp_path):
    from deepspeech_it.data.audio import canonical_wav_frames, convert_to_wav, read_audio, write_wav
    import numpy as np

    samples = (np.sin(np.arange(8000) / 5) * 9000).astype(np.int16)
    canonical = tmp_path / "canonical.wav"
    write_wav(canonical, samples)
    assert canonical_wav_frames(canonical) == 8000
    assert convert_to_wav(canonical, tmp_path / "copy.wav") == 8000
    assert (tmp_path / "copy.wav").read_bytes() == canonical.read_bytes()
    others = {"float.wav": ("FLOAT", 16000, 1), "stereo.wav": ("PCM_16", 16000, 2), "rate.wav": ("PCM_16", 22050, 1)}
    for name, (subtype, rate, channels) in others.items():
        soundfile.write(tmp_path / name, np.tile(samples[:, None] / 32768, (1, channels)), rate, subtype=subtype)
        assert canonical_wav_frames(tmp_path / name) is None, name
        frames = convert_to_wav(tmp_path / name, tmp_path / f"out-{name}")
        assert canonical_wav_frames(tmp_path / f"out-{name}") == frames == round(8000 * 16000 / rate), name
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(canonical.read_bytes()[:-100])      # the header still promises 100 bytes more
    assert canonical_wav_frames(truncated) is None
    assert convert_to_wav(truncated, tmp_path / "out-truncated.wav") == 8000 - 50
    assert np.array_equal(read_audio(tmp_path / "copy.wav")[0][:, 0], samples / 32768)
