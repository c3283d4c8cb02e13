"""Replay harness: completion pools, baselines and OptScale policies evaluated on stored samples.

A :class:`Pool` holds every stored sample of every question; :func:`evaluate` replays methods
(:class:`BestOfN`, :class:`MajorityVote`, :class:`WeightedVote`, :class:`ESC`, :class:`ASC`,
:class:`DSC`, :class:`OptScaleMethod`) over random sample orders, chooses each method's
settings on calibration folds and reports them on held-out folds; :func:`write_report` writes
the tables and plots.
"""

from optscale.replay._grading import extract_boxed, grade, group_answers
from optscale.replay._methods import (
    ASC,
    DEFAULT_METHODS,
    DSC,
    ESC,
    BestOfN,
    MajorityVote,
    Method,
    OptScaleMethod,
    Rows,
    Setting,
    WeightedVote,
    asc_stop_probability,
    default_methods,
    standard_methods,
)
from optscale.replay._pool import Pool, load_npz, save_npz
from optscale.replay._protocol import Evaluation, Selected, evaluate, make_rows
from optscale.replay._readers import PoolFormatError, load_pool, write_jsonl
from optscale.replay._report import markdown_summary, write_report
from optscale.replay._simulate import CALIBRATION, calibration_table, simulate_pool

__all__ = [
    "ASC",
    "BestOfN",
    "CALIBRATION",
    "DEFAULT_METHODS",
    "DSC",
    "ESC",
    "Evaluation",
    "MajorityVote",
    "Method",
    "OptScaleMethod",
    "Pool",
    "PoolFormatError",
    "Rows",
    "Selected",
    "Setting",
    "WeightedVote",
    "asc_stop_probability",
    "calibration_table",
    "default_methods",
    "evaluate",
    "extract_boxed",
    "grade",
    "group_answers",
    "load_npz",
    "load_pool",
    "make_rows",
    "markdown_summary",
    "save_npz",
    "simulate_pool",
    "standard_methods",
    "write_jsonl",
    "write_report",
]
