"""Confusion counts of every cut through ranked anomaly scores."""

import numpy as np


def cut_counts(anomaly, anomaly_scores):
    """Confusion counts for every threshold that separates distinct scores.

    Samples are flagged from the highest anomaly score down; a cut is only
    placed between two different scores, so tied samples are flagged together.

    Returns
    -------
    n_flagged, true_pos, false_pos : ndarray of int, starting with the cut
        that flags nothing.
    scores_desc : ndarray
        The anomaly scores sorted in decreasing order.
    """
    order = np.argsort(-anomaly_scores, kind="stable")
    scores_desc = anomaly_scores[order]
    hits = anomaly[order]
    # flag the first k samples where the next score is strictly lower
    ends = np.flatnonzero(np.r_[scores_desc[:-1] > scores_desc[1:], True]) + 1
    true_pos = np.r_[0, np.cumsum(hits)[ends - 1]]
    n_flagged = np.r_[0, ends]
    return n_flagged, true_pos, n_flagged - true_pos, scores_desc
