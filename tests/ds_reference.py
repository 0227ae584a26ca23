"""A plain-Python CTC prefix beam search with DeepSpeech 0.9.3's rules, slow and small, to check the compiled
decoder against: one entry per distinct prefix holding its blank / non-blank ending log probabilities; a word is
scored (alpha * ln P + beta) when its space is appended and, for the last word, at the end; words must be in the
dictionary; the beam keeps the best BEAM_WIDTH prefixes after every frame."""

import math

import numpy as np

NEG = -math.inf


def logsumexp(a: float, b: float) -> float:
    if a == NEG:
        return b
    if b == NEG:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(min(a, b) - high))


def reference_decode(probs: np.ndarray, labels, words, lm_log10, alpha: float, beta: float, beam_width: int) -> str:
    """LM_LOG10(history_words, word) -> log10 P(word | <s> history); words outside WORDS are never spelt."""
    blank, space = len(labels), labels.index(" ")
    spellings = set(words)
    prefixes_of_words = {w[:i] for w in words for i in range(len(w) + 1)}

    def last_word(prefix) -> str:
        text = "".join(labels[c] for c in prefix)
        return text.split(" ")[-1]

    def history(prefix) -> list[str]:
        return "".join(labels[c] for c in prefix).split()

    def word_score(history_words, word) -> float:
        if word not in spellings:
            return alpha * -1000.0 + beta
        return alpha * lm_log10(history_words, word) * math.log(10) + beta

    beam = {(): (0.0, NEG)}     # prefix -> (log p ending in blank, log p ending in a character)
    log_probs = np.log(probs.astype(np.float64))
    for frame in log_probs:
        following: dict[tuple, list[float]] = {}

        def add(prefix, blank_part=NEG, char_part=NEG):
            entry = following.setdefault(prefix, [NEG, NEG])
            entry[0] = logsumexp(entry[0], blank_part)
            entry[1] = logsumexp(entry[1], char_part)

        for prefix, (p_blank, p_char) in beam.items():
            total = logsumexp(p_blank, p_char)
            for c, lp in enumerate(frame):
                if c == blank:
                    add(prefix, blank_part=total + lp)
                    continue
                last = prefix[-1] if prefix else None
                if c == last:
                    add(prefix, char_part=p_char + lp)
                partial = last_word(prefix)
                if c == space:
                    if partial not in spellings:
                        continue
                elif partial + labels[c] not in prefixes_of_words:
                    continue
                extended = total if c != last else p_blank
                if extended == NEG:
                    continue
                score = extended + lp
                if c == space:
                    score += word_score(history(prefix)[:-1], partial)
                add(prefix + (c,), char_part=score)
        ranked = sorted(following.items(), key=lambda kv: -logsumexp(*kv[1]))
        beam = {prefix: tuple(parts) for prefix, parts in ranked[:beam_width]}

    def final(prefix, parts):
        score = logsumexp(*parts)
        if prefix and prefix[-1] != space:
            score += word_score(history(prefix)[:-1], last_word(prefix))
        return score

    best = max(beam.items(), key=lambda kv: final(*kv))[0]
    return "".join(labels[c] for c in best).strip()
