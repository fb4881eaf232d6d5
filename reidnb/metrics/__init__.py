"""Evaluation and re-ranking: CMC/mAP (Market-1501, CUHK03 single shot, multi-query) and
k-reciprocal re-ranking; every function takes numpy arrays or torch tensors."""

from reidnb.metrics.rank import (
    AP_VARIANTS,
    evaluate_cuhk03,
    evaluate_rank,
    nearest_partners,
    pool_multi_query,
    same_camera_gallery,
)
from reidnb.metrics.rerank import EXPANSIONS, re_ranking

__all__ = [
    "AP_VARIANTS",
    "EXPANSIONS",
    "evaluate_cuhk03",
    "evaluate_rank",
    "nearest_partners",
    "pool_multi_query",
    "re_ranking",
    "same_camera_gallery",
]
