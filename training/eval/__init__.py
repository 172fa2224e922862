"""Evaluation: pure ranking metrics, the three named protocols, and report writing."""

from training.eval.metrics import hit_rate, mrr, ndcg, target_ranks
from training.eval.protocols import (
    DEFAULT_PROTOCOL_SEED,
    PROTOCOLS,
    ProtocolSpec,
    ScoreFn,
    build_candidates,
    compute_metrics,
    evaluate,
    evaluate_all,
    ranks_by_protocol,
)
from training.eval.report import aggregate, markdown_table, write_metrics_json, write_report

__all__ = [
    "DEFAULT_PROTOCOL_SEED",
    "PROTOCOLS",
    "ProtocolSpec",
    "ScoreFn",
    "aggregate",
    "build_candidates",
    "compute_metrics",
    "evaluate",
    "evaluate_all",
    "hit_rate",
    "markdown_table",
    "mrr",
    "ndcg",
    "ranks_by_protocol",
    "target_ranks",
    "write_metrics_json",
    "write_report",
]
