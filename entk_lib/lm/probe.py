"""Probe metrics for one-score-per-window directions, baselines, and permutation tests.

A *direction* gives one score per window. For each class (part-of-speech tag), the best
(direction, sign) is chosen on a train half by average precision (AP), then scored on the test
half by AP, AUROC and precision at quota (the precision among the ``q`` top-scored test windows,
``q`` the number of test positives). Everything here is plain numpy, tested against
hand-computed values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..linalg import empirical_p_value
from ..params import check_int, check_real

__all__ = [
    "ProbeResult",
    "average_precision",
    "auroc",
    "paired_permutation_test",
    "pca_scores",
    "precision_at_quota",
    "probe",
    "random_direction_scores",
    "stratified_split",
]


def _check_binary(scores, labels):
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"`scores` and `labels` must be 1-d of equal length, got {scores.shape}, "
                         f"{labels.shape}")
    return scores, labels


def average_precision(scores, labels) -> float:
    """AP = mean over positives of the precision at that positive's rank (ties: pessimistic-free,
    step-wise as scikit-learn: tied scores form one threshold). NaN when there is no positive."""
    scores, labels = _check_binary(scores, labels)
    n_pos = labels.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each threshold group
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall_gain = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(precision * recall_gain))


def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2."""
    scores, labels = _check_binary(scores, labels)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size)
    sorted_x = x[order]
    start = 0
    for end in np.r_[np.nonzero(np.diff(sorted_x))[0] + 1, x.size]:
        ranks[order[start:end]] = 0.5 * (start + end - 1) + 1
        start = end
    return ranks


def precision_at_quota(scores, labels) -> float:
    """Precision among the ``q`` top-scored items, ``q`` = number of positives (R-precision)."""
    scores, labels = _check_binary(scores, labels)
    q = int(labels.sum())
    if q == 0:
        return float("nan")
    top = np.argsort(-scores, kind="mergesort")[:q]
    return float(labels[top].mean())


def stratified_split(labels, seed: int = 0, frac_train: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): within every class, a seeded shuffle puts ``round(frac*n_c)`` in train."""
    frac_train = check_real("frac_train", frac_train, low=0.0, high=1.0, low_inclusive=False,
                            high_inclusive=False)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train = []
    for c in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        train.append(idx[: int(round(frac_train * idx.size))])
    train = np.sort(np.concatenate(train))
    test = np.setdiff1d(np.arange(labels.size), train)
    return train, test


def pca_scores(activations, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal components of (N, d) activations: scores (N, k) and directions (k, d)."""
    x = np.asarray(activations, dtype=np.float64)
    k = check_int("k", k, minimum=1, maximum=min(x.shape))
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T, vt[:k]


def random_direction_scores(activations, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Projections of centred (N, d) activations on ``k`` random unit directions (seeded)."""
    x = np.asarray(activations, dtype=np.float64)
    k = check_int("k", k, minimum=1)
    dirs = np.random.default_rng(seed).standard_normal((k, x.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return (x - x.mean(0)) @ dirs.T, dirs


@dataclass
class ProbeResult:
    """Per class: the chosen direction and sign (on train), and test AP, AUROC, precision at quota.

    Arrays are indexed by class (in ``classes`` order); ``splits`` results are averaged.
    """

    classes: list
    direction: np.ndarray  # (n_splits, n_classes) chosen direction index
    sign: np.ndarray  # (n_splits, n_classes) +1 / -1
    ap: np.ndarray  # (n_splits, n_classes)
    auroc: np.ndarray
    precision_at_quota: np.ndarray
    tests: list  # per split: test indices

    def macro(self) -> dict[str, float]:
        """Macro averages over classes (then over splits)."""
        return {"ap": float(self.ap.mean()), "auroc": float(self.auroc.mean()),
                "precision_at_quota": float(self.precision_at_quota.mean())}

    def per_class(self, metric: str = "ap") -> np.ndarray:
        """(n_classes,) the metric averaged over splits."""
        return getattr(self, metric).mean(0)


def probe(scores, labels, classes=None, *, n_splits: int = 1, seed: int = 0) -> ProbeResult:
    """Best (direction, sign) per class on a stratified train half, scored on the test half.

    Parameters
    ----------
    scores : (N, k) one column per direction.
    labels : (N,) class of each window.
    classes : the classes to probe (default: the sorted unique labels).
    n_splits : stratified 50/50 splits with seeds ``seed, seed+1, ...``; results kept per split.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[0] != labels.size:
        raise ValueError(f"`scores` must be (N, k) with N = len(labels) = {labels.size}, got {scores.shape}")
    n_splits = check_int("n_splits", n_splits, minimum=1)
    classes = list(np.unique(labels)) if classes is None else list(classes)
    shape = (n_splits, len(classes))
    out = ProbeResult(classes, np.zeros(shape, int), np.zeros(shape, int), np.zeros(shape), np.zeros(shape),
                      np.zeros(shape), [])
    signed = np.concatenate([scores, -scores], axis=1)
    for s in range(n_splits):
        train, test = stratified_split(labels, seed=seed + s)
        out.tests.append(test)
        for c, cls in enumerate(classes):
            y = labels == cls
            train_ap = [average_precision(signed[train, j], y[train]) for j in range(signed.shape[1])]
            best = int(np.nanargmax(train_ap))
            col = signed[test, best]
            out.direction[s, c] = best % scores.shape[1]
            out.sign[s, c] = 1 if best < scores.shape[1] else -1
            out.ap[s, c] = average_precision(col, y[test])
            out.auroc[s, c] = auroc(col, y[test])
            out.precision_at_quota[s, c] = precision_at_quota(col, y[test])
    return out


def _test_columns(scores, result: ProbeResult, s: int, c: int) -> np.ndarray:
    return result.sign[s, c] * np.asarray(scores)[result.tests[s], result.direction[s, c]]


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-300)


def _rows_metric(metric: str, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The metric for every row of ``scores`` (P, n) at once (continuous scores: no ties)."""
    n_pos = int(y.sum())
    if metric == "auroc":
        ranks = np.argsort(np.argsort(scores, axis=1), axis=1) + 1
        return (ranks[:, y].sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * (y.size - n_pos))
    ys = y[np.argsort(-scores, axis=1, kind="stable")]
    if metric == "precision_at_quota":
        return ys[:, :n_pos].mean(1)
    precision = np.cumsum(ys, axis=1) / np.arange(1, y.size + 1)
    return (precision * ys).sum(1) / n_pos


def paired_permutation_test(scores_a, result_a: ProbeResult, scores_b, result_b: ProbeResult, labels,
                            *, metric: str = "ap", n_permutations: int = 2000, seed: int = 0,
                            return_macro: bool = False):
    """One-sided p-values, per class, for "method A beats method B" on the test halves.

    Statistic: the metric of A minus that of B, averaged over splits, each method using the
    (direction, sign) it chose on the train half. Null: the two methods are exchangeable on every
    window -- each window's pair of (z-scored) test scores is swapped with probability 1/2, the
    same swap for a window in every split. ``p = (1 + #{stat_perm >= stat_obs}) / (1 + n_perm)``
    (:func:`entk_lib.linalg.empirical_p_value`, with ``stat_obs`` lowered by 1e-12 so that a
    permutation equal to the observation up to rounding counts). With ``return_macro`` also the
    p-value of the class-averaged statistic (same swaps).

    Returns
    -------
    pvalues : (n_classes,) in ``result_a.classes`` order; with ``return_macro`` a tuple
    ``(pvalues, macro p-value)``.
    """
    if metric not in ("ap", "auroc", "precision_at_quota"):
        raise ValueError(f"`metric` must be 'ap', 'auroc' or 'precision_at_quota', got {metric!r}")
    n_permutations = check_int("n_permutations", n_permutations, minimum=1)
    labels = np.asarray(labels)
    flips = np.random.default_rng(seed).random((n_permutations, labels.size)) < 0.5
    n_splits, n_classes = result_a.ap.shape
    pvalues = np.zeros(n_classes)
    macro_obs, macro_null = 0.0, np.zeros(n_permutations)
    for c, cls in enumerate(result_a.classes):
        observed, null = 0.0, np.zeros(n_permutations)
        for s in range(n_splits):
            test = result_a.tests[s]
            y = labels[test] == cls
            a = _zscore(_test_columns(scores_a, result_a, s, c))
            b = _zscore(_test_columns(scores_b, result_b, s, c))
            observed += (_rows_metric(metric, a[None], y) - _rows_metric(metric, b[None], y))[0]
            swap = flips[:, test]
            null += (_rows_metric(metric, np.where(swap, b, a), y)
                     - _rows_metric(metric, np.where(swap, a, b), y))
        pvalues[c] = empirical_p_value(observed - 1e-12, null)
        macro_obs, macro_null = macro_obs + observed, macro_null + null
    if return_macro:
        return pvalues, empirical_p_value(macro_obs - 1e-12, macro_null)
    return pvalues
