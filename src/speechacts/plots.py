"""Figures logged with every run and written by `compare`. matplotlib only, Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechacts.labels import LABELS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def confusion_figure(y_true: list[str], y_pred: list[str], title: str):
    """Counts and row-normalised confusion matrices side by side."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    counts = confusion_matrix(y_true, y_pred, labels=list(LABELS))
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    panels = ((axes[0], counts, "counts", "d"), (axes[1], normalised, "normalised by true label", ".2f"))
    for ax, matrix, name, fmt in panels:
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
        ax.set_yticks(range(len(LABELS)), LABELS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        high = matrix.max() / 2 if matrix.max() else 1
        for i in range(len(LABELS)):
            for j in range(len(LABELS)):
                ax.text(j, i, format(matrix[i, j], fmt), ha="center", va="center",
                        color="white" if matrix[i, j] > high else "black")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_label_f1_figure(summary: dict[str, tuple[float, float, float]], title: str):
    """Per-label F1 with its interval, from `summarise_folds` output."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    means = [summary[f"f1_{label}"][0] for label in LABELS]
    lows = [summary[f"f1_{label}"][0] - summary[f"f1_{label}"][1] for label in LABELS]
    highs = [summary[f"f1_{label}"][2] - summary[f"f1_{label}"][0] for label in LABELS]
    ax.bar(LABELS, means, yerr=[lows, highs], capsize=4, color="tab:blue")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 (mean over folds, 95% CI)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def comparison_figure(names: list[str], means: list[float], lows: list[float], highs: list[float],
                      seed_scores: list[float | None], title: str):
    """Cross-validated macro-F1 with intervals per run, and the real-text score as a marker."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4.5))
    x = np.arange(len(names))
    ax.bar(x, means, yerr=[np.subtract(means, lows), np.subtract(highs, means)], capsize=4,
           color="tab:blue", label="cross-validated macro-F1 (95% CI)")
    seeds = [(i, s) for i, s in enumerate(seed_scores) if s is not None]
    if seeds:
        ax.scatter([i for i, _ in seeds], [s for _, s in seeds], color="tab:red", zorder=3,
                   label="seed article macro-F1")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1.12)  # headroom for the legend above the bars
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def reliability_figure(before: list[dict], after: list[dict], ece_before: float, ece_after: float):
    """Accuracy against confidence per bin of the top probability, before and after calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for bins, name, ece, style in ((before, "raw", ece_before, "o--"), (after, "calibrated", ece_after, "s-")):
        kept = [b for b in bins if b["rows"]]
        ax.plot([b["confidence"] for b in kept], [b["accuracy"] for b in kept], style,
                label=f"{name} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability on article sentences, out of fold")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def coverage_figure(curve: list[dict]):
    """Share of article sentences labelled, and their accuracy, as the confidence threshold rises."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    thresholds = [c["threshold"] for c in curve]
    ax.plot(thresholds, [c["coverage"] for c in curve], "o-", label="coverage (not unsure)")
    ax.plot(thresholds, [c["accuracy"] for c in curve], "s-", label="accuracy of those")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("min_confidence")
    ax.set_title("Coverage and accuracy on article sentences, out of fold")
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return fig


def learning_curve_figure(sentences: list[float], scores: list[tuple[float, float, float]], ylabel: str, title: str):
    """Score (mean, low, high) against training sentences, on a log2 axis: one step per doubling."""
    plt = _pyplot()
    means, lows, highs = (np.array([s[i] for s in scores]) for i in range(3))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.fill_between(sentences, lows, highs, color="tab:blue", alpha=0.2, label="interval over folds (corrected t)")
    ax.plot(sentences, means, "o-", color="tab:blue", label="mean over folds")
    for x, y in zip(sentences, means):
        ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize="small")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sentences, [f"{x:,.0f}" for x in sentences])
    ax.minorticks_off()
    ax.set_xlabel("labelled training sentences (per fold)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig
