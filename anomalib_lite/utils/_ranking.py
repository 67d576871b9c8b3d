"""Confusion counts of every cut through ranked anomaly scores."""

import numpy as np


def cut_counts(anomaly, anomaly_scores):
    """``n_flagged, true_pos, false_pos`` of every cut between distinct scores,
    from the one that flags nothing down, and the scores sorted decreasing;
    tied samples are flagged together."""
    order = np.argsort(-anomaly_scores, kind="stable")
    scores_desc = anomaly_scores[order]
    hits = anomaly[order]
    # flag the first k samples where the next score is strictly lower
    ends = np.flatnonzero(np.r_[scores_desc[:-1] > scores_desc[1:], True]) + 1
    true_pos = np.r_[0, np.cumsum(hits)[ends - 1]]
    n_flagged = np.r_[0, ends]
    return n_flagged, true_pos, n_flagged - true_pos, scores_desc
