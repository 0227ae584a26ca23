"""Choosing the decoder's lm_alpha / lm_beta on the dev set, then measuring the test set once with the choice.

A search is a list of (alpha, beta) pairs (``LM_EVALUATE_RANGE``, a grid) or an optuna study (``LM_OPTIMIZE_TRIALS``,
as Coqui STT's lm_optimizer). Every pair decodes the cached dev outputs with the scorer; the pair with the lowest
dev WER (then CER) wins. Only then are the test outputs loaded and decoded, with and without the scorer.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from deepspeech_it.decode.ctc import DecoderPool, ScorerSpec, Transcript
from deepspeech_it.evaluate.grid import Pair
from deepspeech_it.evaluate.report import error_rates, worst_utterances
from deepspeech_it.util.atomic import atomic_path, write_json_atomic
from deepspeech_it.util.plots import pyplot, save_figure

log = logging.getLogger(__name__)



# ---- scoring ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairResult:
    alpha: float
    beta: float
    wer: float
    cer: float


def evaluate_pair(pool: DecoderPool, references: Sequence[str], alpha: float, beta: float) -> PairResult:
    hypotheses = [t.text for t in pool.decode(alpha, beta, label=f"dev alpha={alpha:g} beta={beta:g}")]
    wer, cer = error_rates(references, hypotheses)
    log.info("alpha=%g beta=%g: dev WER %.4f CER %.4f", alpha, beta, wer, cer)
    return PairResult(alpha, beta, wer, cer)


def choose_best(results: Sequence[PairResult]) -> PairResult:
    """Lowest dev WER; among equal WERs the lowest CER; among equals the first tried."""
    if not results:
        raise ValueError("no alpha/beta pair was evaluated")
    return min(results, key=lambda r: (r.wer, r.cer))


# ---- searches --------------------------------------------------------------------------------------------------

def grid_search(pool: DecoderPool, references: Sequence[str], pairs: Sequence[Pair], journal: Path,
                fingerprint: str) -> list[PairResult]:
    """Every pair on dev. Each result is appended to JOURNAL as it comes, so an interrupted search resumes where
    it stopped; the journal's first line is the inputs' fingerprint, and a journal of other inputs starts over."""
    done = _read_journal(journal, fingerprint)
    if not done:
        journal.parent.mkdir(parents=True, exist_ok=True)
        journal.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    results = []
    for alpha, beta in pairs:
        result = done.get((alpha, beta))
        if result is None:
            result = evaluate_pair(pool, references, alpha, beta)
            with open(journal, "a") as handle:
                handle.write(json.dumps(asdict(result)) + "\n")
        results.append(result)
    return results


def _read_journal(journal: Path, fingerprint: str) -> dict[Pair, PairResult]:
    try:
        lines = journal.read_text().splitlines()
        if not lines or json.loads(lines[0]).get("fingerprint") != fingerprint:
            return {}
        results = [PairResult(**json.loads(line)) for line in lines[1:] if line.strip()]
    except (OSError, ValueError, TypeError):
        return {}
    return {(r.alpha, r.beta): r for r in results}


def optuna_search(pool: DecoderPool, references: Sequence[str], trials: int, alpha_max: float, beta_max: float,
                  study_path: Path, fingerprint: str, seed: int) -> list[PairResult]:
    """An optuna (TPE) study of alpha in [0, ALPHA_MAX], beta in [0, BETA_MAX] minimising dev WER, kept in the
    sqlite file STUDY_PATH under a name derived from the inputs: a rerun continues up to TRIALS finished trials."""
    import hashlib

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_path.parent.mkdir(parents=True, exist_ok=True)
    name = "lm-" + hashlib.sha256(f"{fingerprint};{alpha_max};{beta_max}".encode()).hexdigest()[:16]
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{study_path}", load_if_exists=True,
                                direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial) -> float:
        alpha = trial.suggest_float("lm_alpha", 0.0, alpha_max)
        beta = trial.suggest_float("lm_beta", 0.0, beta_max)
        result = evaluate_pair(pool, references, alpha, beta)
        trial.set_user_attr("cer", result.cer)
        return result.wer

    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(finished) < trials:
        study.optimize(objective, n_trials=trials - len(finished))
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE][:trials]
    return [PairResult(t.params["lm_alpha"], t.params["lm_beta"], t.value, t.user_attrs["cer"]) for t in finished]


# ---- outputs ---------------------------------------------------------------------------------------------------

def write_results_csv(path: Path, results: Sequence[PairResult]) -> None:
    with atomic_path(path) as temp:
        with open(temp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["alpha", "beta", "wer", "cer"])
            writer.writerows([r.alpha, r.beta, r.wer, r.cer] for r in results)


def is_full_grid(results: Sequence[PairResult]) -> bool:
    alphas = {r.alpha for r in results}
    betas = {r.beta for r in results}
    return len(alphas) > 1 and len(betas) > 1 and {(r.alpha, r.beta) for r in results} == set(
        itertools.product(alphas, betas))


def plot_results(path: Path, results: Sequence[PairResult], history: bool) -> None:
    """A heatmap of dev WER over a full grid; the optimisation history for optuna; else WER per pair."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 5))
    best = choose_best(results)
    if history:
        wers = [r.wer for r in results]
        axes.plot(range(1, len(wers) + 1), wers, "o", label="trial")
        axes.plot(range(1, len(wers) + 1), np.minimum.accumulate(wers), "-", label="best so far")
        axes.set_xlabel("trial")
        axes.set_ylabel("dev WER")
        axes.legend()
        axes.set_title(f"optuna search: best alpha={best.alpha:.3f} beta={best.beta:.3f} WER={best.wer:.3f}")
    elif is_full_grid(results):
        alphas = sorted({r.alpha for r in results})
        betas = sorted({r.beta for r in results})
        grid = np.full((len(betas), len(alphas)), np.nan)
        for r in results:
            grid[betas.index(r.beta), alphas.index(r.alpha)] = r.wer
        image = axes.imshow(grid, origin="lower", aspect="auto", cmap="viridis_r")
        axes.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas], rotation=45)
        axes.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
        middle = np.nanmin(grid) + (np.nanmax(grid) - np.nanmin(grid)) / 2
        for (row, col), value in np.ndenumerate(grid):
            axes.text(col, row, f"{value:.3f}", ha="center", va="center", fontsize=7,
                      color="black" if value <= middle else "white")
        axes.set_xlabel("lm_alpha")
        axes.set_ylabel("lm_beta")
        figure.colorbar(image, label="dev WER")
        axes.set_title(f"dev WER; best alpha={best.alpha:g} beta={best.beta:g} WER={best.wer:.3f}")
    else:
        points = axes.scatter([r.alpha for r in results], [r.beta for r in results], c=[r.wer for r in results],
                              cmap="viridis_r", s=80)
        for r in results:
            axes.annotate(f"{r.wer:.3f}", (r.alpha, r.beta), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axes.set_xlabel("lm_alpha")
        axes.set_ylabel("lm_beta")
        figure.colorbar(points, label="dev WER")
        axes.set_title(f"dev WER per pair; best alpha={best.alpha:g} beta={best.beta:g}")
    save_figure(figure, path)


def test_report(wav_paths: Sequence[Path], references: Sequence[str], with_scorer: Sequence[Transcript],
                without_scorer: Sequence[Transcript], best: PairResult) -> dict:
    """Test WER/CER with the chosen pair and with greedy decoding (no scorer), and the worst utterances."""
    scored = [t.text for t in with_scorer]
    greedy = [t.text for t in without_scorer]
    wer, cer = error_rates(references, scored)
    greedy_wer, greedy_cer = error_rates(references, greedy)
    worst = worst_utterances(wav_paths, references, {"with_scorer": scored, "without_scorer": greedy})
    return {"utterances": len(references), "lm_alpha": best.alpha, "lm_beta": best.beta,
            "with_scorer": {"wer": wer, "cer": cer}, "without_scorer": {"wer": greedy_wer, "cer": greedy_cer},
            "worst_utterances": worst}


def scorer_digest_without_weights(path: Path, kenlm_size: int) -> str:
    """sha256 of a scorer package with its alpha/beta left out: what the search depends on, unchanged when this
    stage re-writes the header."""
    import hashlib

    from deepspeech_it.lm.scorer import TRAILER

    weights_start = kenlm_size + TRAILER.size - 16
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(weights_start))
        handle.seek(16, 1)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- the whole evaluation --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvaluationPaths:
    results_csv: Path        # reports/lm_eval.csv
    plot: Path               # reports/lm_eval.png
    best_json: Path          # lm/best_alpha_beta.json
    test_json: Path          # reports/test_scorer.json
    journal: Path            # grid search progress
    study: Path              # optuna study (sqlite)


@dataclass(frozen=True)
class SearchPlan:
    pairs: tuple[Pair, ...]          # the grid; empty with no trials: only the default pair
    trials: int                      # > 0: an optuna study instead of the grid
    alpha_max: float
    beta_max: float
    default_pair: Pair
    seed: int


def tune_alpha_beta(spec: ScorerSpec, load_dev: Callable, load_test: Callable, plan: SearchPlan,
                paths: EvaluationPaths, fingerprint: str, jobs: int | None, progress: bool,
                rewrite_header: Callable[[float, float], None] | None) -> dict:
    """Searches on dev, writes the reports, decodes test once with the choice and re-writes the scorer header.

    LOAD_DEV / LOAD_TEST return the split's acoustic outputs (``SplitOutputs``); LOAD_TEST is called only after
    the search has ended.
    """
    if plan.trials and plan.pairs:
        raise ValueError("LM_EVALUATE_RANGE and LM_OPTIMIZE_TRIALS both set: choose one search")
    dev = load_dev()
    references = dev.transcripts
    with DecoderPool(spec, dev.probabilities, jobs, progress) as pool:
        if plan.trials:
            results = optuna_search(pool, references, plan.trials, plan.alpha_max, plan.beta_max, paths.study,
                                    fingerprint, plan.seed)
        else:
            results = grid_search(pool, references, plan.pairs or (plan.default_pair,), paths.journal, fingerprint)
    best = choose_best(results)
    source = "optuna" if plan.trials else "grid" if plan.pairs else "defaults"
    write_results_csv(paths.results_csv, results)
    plot_results(paths.plot, results, history=bool(plan.trials))
    write_json_atomic(paths.best_json, {"lm_alpha": best.alpha, "lm_beta": best.beta, "dev_wer": best.wer,
                                        "dev_cer": best.cer, "search": source, "pairs_tried": len(results)})

    test = load_test()
    with DecoderPool(spec, test.probabilities, jobs, progress) as pool:
        with_scorer = pool.decode(best.alpha, best.beta, label="test with scorer")
        without_scorer = pool.decode(None, None, label="test without scorer")
    report = test_report([u.wav_path for u in test.utterances], test.transcripts, with_scorer, without_scorer,
                         best)
    write_json_atomic(paths.test_json, report)
    if rewrite_header is not None:
        rewrite_header(best.alpha, best.beta)
    return {"best": asdict(best), "search": source, "pairs_tried": len(results),
            "test_with_scorer": report["with_scorer"], "test_without_scorer": report["without_scorer"]}
