"""lm_alpha/lm_beta search: the range parser, the best-pair choice, the reports, the re-written scorer header, and
proof that the test set is only touched after the search."""

import csv
import json

import numpy as np
import pytest

from deepspeech_it.decode.ctc import ScorerDecoder, scorer_spec
from deepspeech_it.evaluate import acoustic_outputs
from deepspeech_it.evaluate import alpha_beta as lm_search
from deepspeech_it.evaluate.alpha_beta import (EvaluationPaths, PairResult, SearchPlan, choose_best,
                                               scorer_digest_without_weights, tune_alpha_beta)
from deepspeech_it.evaluate.grid import parse_evaluate_range
from deepspeech_it.lm.scorer import read_scorer, set_default_alpha_beta

from decoding_helpers import ALPHABET, BLANK, probabilities, spelled, write_scorer_package


@pytest.mark.parametrize("text, pairs", [
    ("", ()),
    ("  ", ()),
    ("0.5,1.5 0.6,1.4", ((0.5, 1.5), (0.6, 1.4))),
    ("1,-2", ((1.0, -2.0),)),
    ("0:1:3,2", ((0.0, 2.0), (0.5, 2.0), (1.0, 2.0))),
    ("0:1:2,0:3:2", ((0.0, 0.0), (0.0, 3.0), (1.0, 0.0), (1.0, 3.0))),
    ("2:2:1,1 2,1", ((2.0, 1.0),)),
    ("0.93,1.18\t1e-1,0", ((0.93, 1.18), (0.1, 0.0))),
])
def test_range_parser_accepts(text, pairs):
    assert parse_evaluate_range(text) == pairs


@pytest.mark.parametrize("text", ["0.5", "0.5,", ",1", "0.5,1.5,2", "a,b", "0.5;1.5", "-1,1", "0:1,1", "0:1:0,1",
                                  "1:0:3,1", "0:1:x,1", "0:1:2.5,1", "nan,1", "inf,1", "0:2:1,1", "0.5,1.5 0.6"])
def test_range_parser_rejects_with_one_line(text):
    with pytest.raises(ValueError) as problem:
        parse_evaluate_range(text)
    message = str(problem.value)
    assert "\n" not in message and "allowed:" in message


def test_config_uses_the_parser_and_exits_with_a_config_error():
    from deepspeech_it.config import ConfigError, load_config

    assert load_config({"LM_EVALUATE_RANGE": "0:1:2,1"}).lm_evaluate_range == ((0.0, 1.0), (1.0, 1.0))
    with pytest.raises(ConfigError, match="LM_EVALUATE_RANGE"):
        load_config({"LM_EVALUATE_RANGE": "0.5"})


def test_best_pair_is_lowest_wer_then_cer_then_first():
    results = [PairResult(0.5, 1.0, 0.30, 0.10), PairResult(1.0, 1.0, 0.25, 0.12), PairResult(1.5, 0.5, 0.25, 0.08),
               PairResult(2.0, 0.0, 0.25, 0.08)]
    assert choose_best(results) == results[2]
    with pytest.raises(ValueError):
        choose_best([])


# ---- a whole evaluation on a tiny scorer --------------------------------------------------------------------

# Dev and test utterances: "cassa" (two s) is what was said, acoustically "casa" is a little likelier and the LM
# strongly prefers "cassa": only a large enough alpha gets them right.
UNIGRAMS = {"casa": -3.0, "cassa": -0.3, "bella": -0.5, "rossa": -0.5}
UTTERANCES = {
    "dev": [("cassa bella", "cassa bella"), ("cassa rossa", "cassa rossa"), ("bella", "bella")],
    "test": [("cassa", "cassa"), ("rossa cassa", "rossa cassa")],
}


def frames_for(text: str) -> np.ndarray:
    frames = []
    for word in text.split():
        if word == "cassa":
            frames += [*spelled("ca"), {"s": 0.6, BLANK: 0.4}, BLANK, {"s": 0.45, BLANK: 0.55}, *spelled("a")]
        else:
            frames += spelled(word)
        frames += [" ", BLANK]
    return probabilities(frames[:-2])


@pytest.fixture
def corpus(tmp_path):
    """Dev/test CSVs, a scorer package, and a fake acoustic model mapping each wav name to hand-made frames."""
    outputs = {}
    for split, rows in UTTERANCES.items():
        with open(tmp_path / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["wav_filename", "wav_filesize", "transcript"])
            for i, (spoken, transcript) in enumerate(rows):
                name = f"{split}_{i}.wav"
                writer.writerow([name, 1000, transcript])
                outputs[name] = frames_for(spoken)
    scorer = write_scorer_package(tmp_path, UNIGRAMS, words=list(UNIGRAMS), alpha=0.1, beta=0.2)
    return tmp_path, scorer, outputs


def paths_in(folder) -> EvaluationPaths:
    return EvaluationPaths(results_csv=folder / "reports" / "lm_eval.csv", plot=folder / "reports" / "lm_eval.png",
                           best_json=folder / "lm" / "best_alpha_beta.json",
                           test_json=folder / "reports" / "test_scorer.json",
                           journal=folder / "tmp" / "journal.jsonl", study=folder / "lm" / "study.sqlite")


def run_evaluation(folder, scorer, outputs, plan, events, jobs=1):
    """tune_alpha_beta as the stage calls it, every CSV read and every dev decode recorded in EVENTS."""
    def predictor_factory():
        return (lambda wav: outputs[wav.name]), None

    def loader(split):
        return lambda: acoustic_outputs.cached_split_outputs(folder / f"{split}.csv", folder / "tmp" / f"{split}.npz",
                                                             predictor_factory, [scorer], split, False)

    return tune_alpha_beta(scorer_spec(scorer, ALPHABET, beam_width=64), loader("dev"), loader("test"), plan,
                       paths_in(folder), fingerprint="fp", jobs=jobs, progress=False,
                       rewrite_header=lambda a, b: set_default_alpha_beta(scorer, a, b))


@pytest.fixture
def events(monkeypatch):
    """Instrumented data access: every split CSV read and every dev pair decoded, in order."""
    log = []
    read_split, evaluate_pair = acoustic_outputs.read_split, lm_search.evaluate_pair

    def recording_read(path):
        log.append(("read", path.name))
        return read_split(path)

    def recording_pair(pool, references, alpha, beta):
        log.append(("search", alpha, beta))
        return evaluate_pair(pool, references, alpha, beta)

    monkeypatch.setattr(acoustic_outputs, "read_split", recording_read)
    monkeypatch.setattr(lm_search, "evaluate_pair", recording_pair)
    return log


def test_grid_search_chooses_on_dev_reports_and_rewrites_the_header(corpus, events):
    folder, scorer, outputs = corpus
    kenlm_part = scorer.read_bytes()[:read_scorer(scorer).kenlm_size]
    content = scorer_digest_without_weights(scorer, read_scorer(scorer).kenlm_size)
    plan = SearchPlan(pairs=parse_evaluate_range("0:3:2,0:1:2"), trials=0, alpha_max=5, beta_max=5,
                      default_pair=(0.93, 1.18), seed=1)
    summary = run_evaluation(folder, scorer, outputs, plan, events)

    # The test CSV is read once, after the last dev decode; the search never touched it.
    searches = [i for i, e in enumerate(events) if e[0] == "search"]
    test_reads = [i for i, e in enumerate(events) if e == ("read", "test.csv")]
    assert len(searches) == 4 and test_reads == [len(events) - 1] and test_reads[0] > max(searches)

    rows = list(csv.DictReader(open(folder / "reports" / "lm_eval.csv")))
    assert [(float(r["alpha"]), float(r["beta"])) for r in rows] == [(0, 0), (0, 1), (3, 0), (3, 1)]
    wers = {(float(r["alpha"]), float(r["beta"])): float(r["wer"]) for r in rows}
    assert wers[(0, 0)] > 0 and min(wers.values()) == 0 and wers[(3, 0)] == 0
    best = json.loads((folder / "lm" / "best_alpha_beta.json").read_text())
    assert (best["lm_alpha"], best["dev_wer"], best["search"]) == (3.0, 0.0, "grid")
    assert summary["best"]["alpha"] == 3.0
    assert (folder / "reports" / "lm_eval.png").read_bytes()[:4] == b"\x89PNG"

    report = json.loads((folder / "reports" / "test_scorer.json").read_text())
    assert report["with_scorer"]["wer"] == 0.0 and report["without_scorer"]["wer"] > 0
    assert report["worst_utterances"][0]["without_scorer"] in ("casa", "rossa casa")

    # Header re-written with the chosen pair; the KenLM part and the dictionary are untouched.
    header = read_scorer(scorer)
    assert (header.alpha, header.beta) == (best["lm_alpha"], best["lm_beta"])
    assert scorer.read_bytes()[:header.kenlm_size] == kenlm_part
    assert scorer_digest_without_weights(scorer, header.kenlm_size) == content
    assert ScorerDecoder(scorer_spec(scorer, ALPHABET, 16)).decode(frames_for("cassa"), 3.0, 0.0).text == "cassa"


def test_grid_resumes_from_its_journal(corpus, events):
    folder, scorer, outputs = corpus
    plan = SearchPlan(pairs=((0.0, 0.0), (3.0, 0.0)), trials=0, alpha_max=5, beta_max=5, default_pair=(1, 1), seed=1)
    run_evaluation(folder, scorer, outputs, plan, events)
    events.clear()
    bigger = SearchPlan(pairs=((0.0, 0.0), (3.0, 0.0), (2.0, 0.5)), trials=0, alpha_max=5, beta_max=5,
                        default_pair=(1, 1), seed=1)
    run_evaluation(folder, scorer, outputs, bigger, events)
    assert [e for e in events if e[0] == "search"] == [("search", 2.0, 0.5)]
    assert len(list(csv.DictReader(open(folder / "reports" / "lm_eval.csv")))) == 3


def test_no_search_uses_the_defaults(corpus, events):
    folder, scorer, outputs = corpus
    plan = SearchPlan(pairs=(), trials=0, alpha_max=5, beta_max=5, default_pair=(0.93, 1.18), seed=1)
    summary = run_evaluation(folder, scorer, outputs, plan, events)
    assert summary["search"] == "defaults" and [e for e in events if e[0] == "search"] == [("search", 0.93, 1.18)]
    # The package stores the weights as float32 values, as DeepSpeech's generate_scorer_package does.
    assert (read_scorer(scorer).alpha, read_scorer(scorer).beta) == pytest.approx((0.93, 1.18), rel=1e-6)


def test_optuna_search_resumes_from_its_study_on_two_processes(corpus, events):
    folder, scorer, outputs = corpus
    plan = SearchPlan(pairs=(), trials=2, alpha_max=5, beta_max=3, default_pair=(1, 1), seed=7)
    run_evaluation(folder, scorer, outputs, plan, events, jobs=2)
    assert len([e for e in events if e[0] == "search"]) == 2
    events.clear()
    more = SearchPlan(pairs=(), trials=3, alpha_max=5, beta_max=3, default_pair=(1, 1), seed=7)
    summary = run_evaluation(folder, scorer, outputs, more, events, jobs=2)
    tried = [e for e in events if e[0] == "search"]
    assert len(tried) == 1 and 0 <= tried[0][1] <= 5 and 0 <= tried[0][2] <= 3
    rows = list(csv.DictReader(open(folder / "reports" / "lm_eval.csv")))
    assert len(rows) == 3 and summary["search"] == "optuna"
    assert json.loads((folder / "lm" / "best_alpha_beta.json").read_text())["dev_wer"] == min(
        float(r["wer"]) for r in rows)


def test_both_searches_at_once_is_refused(corpus, events):
    folder, scorer, outputs = corpus
    plan = SearchPlan(pairs=((1.0, 1.0),), trials=2, alpha_max=5, beta_max=5, default_pair=(1, 1), seed=1)
    with pytest.raises(ValueError, match="choose one"):
        run_evaluation(folder, scorer, outputs, plan, events)
    assert events == []


# ---- the stage script ----------------------------------------------------------------------------------------

def test_stage_05_script_runs_skips_and_refuses_two_searches(imported_corpus, tmp_path):
    """Stage 05 on the imported demo corpus with a small random checkpoint and a scorer of the corpus' words."""
    import shutil

    from deepspeech_it.export.graph import random_weights
    from deepspeech_it.model.checkpoint import save_checkpoint

    from conftest import run_script

    data_dir = tmp_path / "data"
    shutil.copytree(imported_corpus.parent.parent, data_dir)
    cv_dir = data_dir / "data" / "cv-it"
    weights = random_weights(16, ALPHABET, seed=5)
    save_checkpoint(data_dir / "checkpoints", "best_dev", {"global_step": np.asarray(1, np.int64), **weights}, {}, 1)
    words = sorted({w for split in ("train", "dev", "test") for row in acoustic_outputs.read_split(
        cv_dir / f"{split}.csv") for w in row.transcript.split()})
    (data_dir / "lm").mkdir(exist_ok=True)
    scorer = write_scorer_package(data_dir / "lm", {w: -1.5 for w in words}, words=words, alpha=0.1, beta=0.1)

    result = run_script("05_evaluate_lm.py", data_dir, LM_EVALUATE_RANGE="0.5,1 2,0.5", BEAM_WIDTH="16")
    assert result.returncode == 0, result.stderr
    assert "chosen lm_alpha=" in result.stdout
    best = json.loads((data_dir / "lm" / "best_alpha_beta.json").read_text())
    assert (best["lm_alpha"], best["lm_beta"]) in ((0.5, 1.0), (2.0, 0.5))
    assert (read_scorer(scorer).alpha, read_scorer(scorer).beta) == (best["lm_alpha"], best["lm_beta"])
    report = json.loads((data_dir / "reports" / "test_scorer.json").read_text())
    assert report["utterances"] == len(acoustic_outputs.read_split(cv_dir / "test.csv"))
    assert sorted(p.name for p in (data_dir / "tmp").glob("acoustic_*.npz")) == ["acoustic_dev_0_dev.npz",
                                                                                 "acoustic_test_0_test.npz"]

    again = run_script("05_evaluate_lm.py", data_dir, LM_EVALUATE_RANGE="0.5,1 2,0.5", BEAM_WIDTH="16")
    assert again.returncode == 0 and "skipped" in again.stdout, again.stderr

    both = run_script("05_evaluate_lm.py", data_dir, LM_EVALUATE_RANGE="0.5,1", LM_OPTIMIZE_TRIALS="3")
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1
    bad = run_script("05_evaluate_lm.py", data_dir, LM_EVALUATE_RANGE="0.5;1")
    assert bad.returncode == 2 and "LM_EVALUATE_RANGE" in bad.stderr
