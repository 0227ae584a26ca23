"""Stage 03: the LM corpus (sources, normalisation, leak guard), vocabulary selection, the small-corpus fallback and
the stage run end to end on the project's own Italian sentences."""

from __future__ import annotations

import collections
import csv
import gzip
import json
import logging
import lzma
import shutil
from pathlib import Path

import kenlm
import pytest

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.textnorm import REASON_NOT_ENCODABLE, Normalizer, Rejected
from deepspeech_it.demo.synth import project_sentences
from deepspeech_it.lm import corpus as lm_corpus
from deepspeech_it.lm.corpus import REASON_LEAK, Source, batched, held_out_sentences, prepare_corpus, top_words
from deepspeech_it.lm.kenlm_tools import estimate_arpa, kenlm_programs
from deepspeech_it.lm.scorer import read_scorer
from deepspeech_it.paths import ALPHABET_DIR

from conftest import run_script

IT = Alphabet.from_file(ALPHABET_DIR / "it.txt")


def normalised(sentences):
    normalizer = Normalizer(IT)
    return [normalizer.normalize(s) for s in sentences]


def corpus_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# ---- corpus ---------------------------------------------------------------------------------------------------


def test_leak_guard_removes_every_spelling_of_a_dev_or_test_sentence(tmp_path):
    sentences = normalised(project_sentences())
    held_sentences, train_sentences = sentences[:10], sentences[10:]
    held_out = held_out_sentences(Normalizer(IT), [s.capitalize() + "." for s in held_sentences])
    # The same held-out sentences as raw text would have them: capitalised, punctuated, typographic apostrophes.
    disguised = ([f"«{s.upper()}!»" for s in held_sentences[:5]]
                 + [s.replace("'", "’") + "?" for s in held_sentences[5:]])
    lines = train_sentences + disguised + ["questa riga ha un carattere cinese 猫"]
    output = tmp_path / "corpus.txt"
    report, counts = prepare_corpus([Source("text", batched(lines))], output, IT, False, held_out, jobs=1)
    kept = corpus_lines(output)
    assert report.leaked == len(held_sentences)
    assert report.rejected == {REASON_LEAK: 10, REASON_NOT_ENCODABLE: 1}
    assert not set(kept) & set(held_sentences)
    assert kept == train_sentences
    assert report.lines_in == {"text": len(lines)} and report.lines_kept == {"text": len(train_sentences)}
    assert counts == collections.Counter(word for s in train_sentences for word in s.split())


def test_old_style_accents_reach_the_corpus_as_real_accents(tmp_path):
    output = tmp_path / "corpus.txt"
    prepare_corpus([Source("text", batched(["Perche' e' cosi' difficile? La citta' dell'anno: l'ho vista un po'"]))],
                   output, IT, False, frozenset(), jobs=1)
    assert corpus_lines(output) == ["perché è così difficile la città dell'anno l'ho vista un po'"]


def test_english_compatible_corpus_has_no_accents(tmp_path):
    english = Alphabet.from_file(ALPHABET_DIR / "en.txt")
    output = tmp_path / "corpus.txt"
    prepare_corpus([Source("text", batched(["Perche' la città è più bella"]))], output, english, True, frozenset(),
                   jobs=1)
    assert corpus_lines(output) == ["perche la citta e piu bella"]


def test_sources_plain_gz_xz_and_common_voice_tsv_in_parallel(tmp_path):
    sentences = normalised(project_sentences())
    plain, packed, xz = tmp_path / "a.txt", tmp_path / "b.txt.gz", tmp_path / "c.txt.xz"
    plain.write_text("\n".join(sentences[:20]) + "\n\n", encoding="utf-8")
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(sentences[20:40]))
    with lzma.open(xz, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(sentences[40:60]))
    tsv = tmp_path / "validated_sentences.tsv"
    with open(tsv, "w", encoding="utf-8", newline="") as handle:
        handle.write("sentence_id\tsentence\tsentence_domain\tsource\tis_used\tclips_count\n")
        for i, sentence in enumerate(sentences[60:]):
            handle.write(f"{i}\t\"{sentence}\"\t\tproject\t1\t0\n")  # quotes are text in Common Voice TSVs
    sources = lambda: [Source("a", lm_corpus.text_batches(plain)), Source("b", lm_corpus.text_batches(packed)),  # noqa
                       Source("c", lm_corpus.text_batches(xz)), Source("cv", batched(lm_corpus.tsv_sentences(tsv)))]
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    report_one, counts_one = prepare_corpus(sources(), one, IT, False, frozenset(), jobs=1)
    report_two, counts_two = prepare_corpus(sources(), two, IT, False, frozenset(), jobs=2)
    assert corpus_lines(one) == sentences == corpus_lines(two)
    assert counts_one == counts_two
    assert report_one.lines_in == report_two.lines_in == {"a": 20, "b": 20, "c": 20, "cv": len(sentences) - 60}


# ---- vocabulary ------------------------------------------------------------------------------------------------


def test_top_words_keeps_the_most_frequent_and_breaks_ties_alphabetically():
    counts = collections.Counter({"e": 9, "la": 7, "zeta": 3, "alfa": 3, "mare": 3, "uno": 1})
    assert top_words(counts, 2) == ["e", "la"]
    assert top_words(counts, 4) == ["e", "la", "alfa", "mare"]
    assert top_words(counts, 100) == ["e", "la", "alfa", "mare", "zeta", "uno"]
    shuffled = collections.Counter(dict(reversed(list(counts.items()))))
    assert top_words(shuffled, 4) == top_words(counts, 4)


# ---- KenLM ------------------------------------------------------------------------------------------------------


def test_small_corpus_falls_back_to_fixed_discounts_with_a_warning(tmp_path, caplog):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(normalised(project_sentences()[:8])) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        result = estimate_arpa(kenlm_programs()["lmplz"], corpus, tmp_path / "lm.arpa", 4, (0,), "5%", tmp_path / "t-")
    assert result.discount_fallback
    assert "discount_fallback" in caplog.text
    assert kenlm.Model(str(tmp_path / "lm.arpa")).order == 4


# ---- the stage --------------------------------------------------------------------------------------------------


def write_split_csvs(data_dir: Path, splits: dict[str, list[str]]) -> None:
    cv_dir = data_dir / "data" / "cv-it"
    cv_dir.mkdir(parents=True)
    for split, transcripts in splits.items():
        with open(cv_dir / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["wav_filename", "wav_filesize", "transcript"])
            for i, transcript in enumerate(transcripts):
                writer.writerow([f"clips/{split}-{i}.wav", 32044, transcript])


@pytest.fixture(scope="module")
def stage_data(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("lm-stage")
    sentences = normalised(project_sentences())
    dev, test, train = sentences[:6], sentences[6:12], sentences[12:]
    write_split_csvs(data_dir, {"train": train, "dev": dev, "test": test})
    extra = data_dir / "extra.txt.gz"
    with gzip.open(extra, "wt", encoding="utf-8") as handle:  # raw text: old accents, a leaked test sentence
        handle.write("\n".join(train + ["Perche' e' piu' bella la citta'?", test[0].upper() + "."]) + "\n")
    result = run_script("03_build_lm.py", data_dir, LM_SOURCES=str(extra), LM_ORDER="4", LM_TOP_K="150",
                        LM_MEMORY="5%")
    assert result.returncode == 0, result.stderr
    return data_dir, extra, sentences, result


def test_stage_builds_the_scorer_and_reports(stage_data):
    data_dir, _, sentences, result = stage_data
    lm_dir = data_dir / "lm"
    report = json.loads((lm_dir / "lm_report.json").read_text())
    train_lines = len(sentences) - 12
    assert report["corpus"]["lines_in"] == 2 * train_lines + 2
    assert report["corpus"]["dev_test_sentences_removed"] == 1
    assert report["kenlm"]["discount_fallback"] and "discount_fallback" in result.stderr
    vocabulary = (lm_dir / "vocab-150.txt").read_text(encoding="utf-8").split()
    assert report["corpus"]["distinct_words"] > 150
    assert len(vocabulary) == report["vocabulary"]["size"] == 150
    assert (report["dictionary"]["words"], report["dictionary"]["words_not_spellable"]) == (150, 0)
    scorer = read_scorer(lm_dir / "kenlm.scorer")
    assert len(scorer.states) == report["dictionary"]["states"]
    assert sorted(scorer.words(IT)) == sorted(vocabulary)
    assert kenlm.Model(str(lm_dir / "kenlm.scorer")).order == 4
    assert scorer.kenlm_size == (lm_dir / "lm.binary").stat().st_size
    assert not (lm_dir / "lm.arpa").exists()
    assert not list(lm_dir.glob(".*tmp")) and not (data_dir / "tmp" / "lm").exists()
    assert (lm_dir / "lm_vocabulary_coverage.png").read_bytes()[:4] == b"\x89PNG"


def test_stage_is_skipped_when_nothing_changed_and_rewrites_only_the_header_for_new_weights(stage_data):
    data_dir, extra, _, _ = stage_data
    scorer_path = data_dir / "lm" / "kenlm.scorer"
    common = dict(LM_SOURCES=str(extra), LM_ORDER="4", LM_TOP_K="150", LM_MEMORY="5%")
    again = run_script("03_build_lm.py", data_dir, **common)
    assert again.returncode == 0 and "skipped" in again.stdout
    before = scorer_path.read_bytes()
    tuned = run_script("03_build_lm.py", data_dir, LM_ALPHA="0.75", LM_BETA="1.5", **common)
    assert tuned.returncode == 0 and "header" in tuned.stdout
    after = read_scorer(scorer_path)
    assert (after.alpha, after.beta) == (0.75, 1.5)
    report = json.loads((data_dir / "lm" / "lm_report.json").read_text())
    assert (report["scorer"]["alpha"], report["scorer"]["beta"]) == (0.75, 1.5)
    assert scorer_path.read_bytes()[:after.kenlm_size] == before[:after.kenlm_size]


def test_stage_keeps_the_arpa_on_request_and_refuses_without_imported_csvs(stage_data, tmp_path):
    data_dir, extra, _, _ = stage_data
    kept = run_script("03_build_lm.py", data_dir, LM_SOURCES=str(extra), LM_ORDER="3", LM_TOP_K="150",
                      LM_MEMORY="5%", LM_KEEP_ARPA="1")
    assert kept.returncode == 0, kept.stderr
    arpa = data_dir / "lm" / "lm.arpa"
    assert arpa.is_file() and kenlm.Model(str(arpa)).order == 3
    missing = run_script("03_build_lm.py", tmp_path)
    assert missing.returncode == 1 and "stage 02" in missing.stderr


def test_stage_on_the_imported_archive_keeps_dev_and_test_out_of_validated_sentences(imported_corpus, tmp_path):
    """Stage 03 after stage 02 on the generated Common Voice archive, whose validated_sentences.tsv lists every
    sentence of every split: all dev/test ones must be left out."""
    source_data = imported_corpus.parent.parent
    data_dir = tmp_path / "data"
    shutil.copytree(imported_corpus, data_dir / "data" / "cv-it", ignore=shutil.ignore_patterns("clips"))
    shutil.copytree(source_data / "extracted", data_dir / "extracted", ignore=shutil.ignore_patterns("clips"))
    result = run_script("03_build_lm.py", data_dir, LM_ORDER="3", LM_MEMORY="5%")
    assert result.returncode == 0, result.stderr
    report = json.loads((data_dir / "lm" / "lm_report.json").read_text())

    normalizer = Normalizer(IT)
    held_out = {t for split in ("dev", "test") for t in lm_corpus.csv_transcripts(imported_corpus / f"{split}.csv")}
    [tsv] = (data_dir / "extracted").rglob("validated_sentences.tsv")
    listed = []
    for sentence in lm_corpus.tsv_sentences(tsv):
        try:
            listed.append(normalizer.normalize(sentence))
        except Rejected:
            pass
    assert held_out and set(held_out) <= set(listed)
    assert report["corpus"]["dev_test_sentences_removed"] == sum(s in held_out for s in listed)
    assert report["corpus"]["sources"]["Common Voice validated_sentences.tsv"]["lines_out"] == \
        sum(s not in held_out for s in listed) > 0
    train = list(lm_corpus.csv_transcripts(imported_corpus / "train.csv"))
    assert report["corpus"]["sources"]["transcripts train.csv"] == {"lines_in": len(train), "lines_out": len(train)}
