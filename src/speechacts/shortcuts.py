"""The shortcut check: which words give a label away, and how far words alone get.

For each label, the word n-grams (1-3 words) most associated with it, by the chi-squared
statistic of "the n-gram occurs" against "the sentence has this label" (one label against
the rest, only n-grams that occur more often with the label than without). Computed apart
for the isolated authored sentences and for the sentences of articles: a cue that is strong
in one and absent from the other is a shortcut that the isolated corpus teaches.

The keyword classifier learns the top KEYWORDS n-grams per label from the isolated
sentences, then labels a sentence by the label whose keywords it matches with the largest
summed chi-squared, "assessment" when it matches none. Its accuracy on the isolated
sentences (seen) against that on article sentences (unseen) says how much of the isolated
corpus a bag of cue words explains, and how little of that carries to reporting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechacts.labels import LABELS

KEYWORDS = 10
MIN_COUNT = 5
DEFAULT_LABEL = "assessment"


@dataclass(frozen=True)
class ShortcutReport:
    words: dict[str, dict[str, list[tuple[str, float]]]]  # subset -> label -> [(n-gram, chi2)]
    keyword_accuracy: dict[str, float]  # subset -> accuracy of the keyword classifier
    keyword_macro_f1: dict[str, float]
    keywords: dict[str, list[tuple[str, float]]]  # what the keyword classifier uses

    def metrics(self) -> dict[str, float]:
        return {**{f"shortcut_keyword_accuracy_{k}": v for k, v in self.keyword_accuracy.items()},
                **{f"shortcut_keyword_macro_f1_{k}": v for k, v in self.keyword_macro_f1.items()}}


def associated(texts: list[str], labels: list[str], top: int = KEYWORDS) -> dict[str, list[tuple[str, float]]]:
    """label -> the `top` n-grams most associated with it (chi-squared, positive association)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.feature_selection import chi2

    vectorizer = CountVectorizer(ngram_range=(1, 3), binary=True, min_df=min(MIN_COUNT, len(texts)),
                                 token_pattern=r"(?u)\b\w[\w']*\b")
    try:
        x = vectorizer.fit_transform(texts)
    except ValueError:  # too few sentences for any n-gram to reach min_df
        return {label: [] for label in LABELS}
    vocab = vectorizer.get_feature_names_out()
    y = np.asarray(labels)
    out = {}
    for label in LABELS:
        positive = y == label
        if not positive.any() or positive.all():
            out[label] = []
            continue
        score, _ = chi2(x, positive)
        with_label = np.asarray(x[positive].mean(axis=0)).ravel()
        without = np.asarray(x[~positive].mean(axis=0)).ravel()
        score = np.where((with_label > without) & np.isfinite(score), score, 0.0)
        best = np.argsort(-score)[:top]
        out[label] = [(str(vocab[i]), float(score[i])) for i in best if score[i] > 0]
    return out


def keyword_predict(texts: list[str], keywords: dict[str, list[tuple[str, float]]]) -> list[str]:
    """The label whose keywords a sentence matches with the largest summed chi-squared."""
    import re

    patterns = {label: [(re.compile(rf"(?<![\w']){re.escape(word)}(?![\w'])"), score) for word, score in words]
                for label, words in keywords.items()}
    predicted = []
    for text in texts:
        lowered = text.casefold()
        totals = {label: sum(score for pattern, score in pats if pattern.search(lowered))
                  for label, pats in patterns.items()}
        label, total = max(totals.items(), key=lambda item: item[1])
        predicted.append(label if total > 0 else DEFAULT_LABEL)
    return predicted


def report(isolated: list[tuple[str, str]], article: list[tuple[str, str]]) -> ShortcutReport:
    """The check on (text, label) pairs of the isolated sentences and of the article sentences."""
    from speechacts.evaluation import scores

    subsets = {"isolated": isolated, "article": article}
    words = {name: associated([t for t, _ in pairs], [y for _, y in pairs]) for name, pairs in subsets.items() if pairs}
    keywords = words.get("isolated") or {label: [] for label in LABELS}
    accuracy, macro_f1 = {}, {}
    for name, pairs in subsets.items():
        if pairs:
            result = scores([y for _, y in pairs], keyword_predict([t for t, _ in pairs], keywords))
            accuracy[name], macro_f1[name] = result["accuracy"], result["macro_f1"]
    return ShortcutReport(words, accuracy, macro_f1, keywords)


def markdown(rep: ShortcutReport) -> list[str]:
    """The data card's section."""
    lines = ["## Shortcut check", "",
             f"Word n-grams most associated with each label (chi-squared, top {KEYWORDS}; the isolated "
             "authored sentences beside the sentences of articles). A cue that is strong on one side only "
             "is a shortcut the other side does not support.", "",
             "| label | " + " | ".join(f"{name} sentences" for name in rep.words) + " |",
             "|---" * (len(rep.words) + 1) + "|"]
    for label in LABELS:
        cells = [", ".join(word for word, _ in rep.words[name][label]) or "-" for name in rep.words]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "A keyword-only classifier (the isolated sentences' top n-grams per label; 'assessment' "
              "where none matches):", "", "| sentences | accuracy | macro-F1 |", "|---|---|---|"]
    lines += [f"| {name}{' (its keywords come from these)' if name == 'isolated' else ''} | "
              f"{rep.keyword_accuracy[name]:.3f} | {rep.keyword_macro_f1[name]:.3f} |" for name in rep.keyword_accuracy]
    return lines
