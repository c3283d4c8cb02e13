"""Replay harness: completion pools, and every policy evaluated on stored samples.

A :class:`Pool` holds every stored sample of every question; a :class:`PolicyMethod` is a
policy (:mod:`optscale.policies`) over a grid of its settings; :func:`evaluate` replays methods
over random sample orders, chooses each method's settings on calibration folds and reports them
on held-out folds; :func:`tune` picks one policy for an objective the same way;
:func:`write_report` writes the tables and plots.
"""

from optscale.replay._grading import extract_boxed, grade, group_answers
from optscale.replay._methods import (
    DEFAULT_METHODS,
    Method,
    PolicyMethod,
    Rows,
    Setting,
    Tables,
    default_methods,
    standard_methods,
)
from optscale.replay._pool import Pool, load_npz, save_npz
from optscale.replay._protocol import REFERENCES, Evaluation, Selected, evaluate, make_rows
from optscale.replay._readers import PoolFormatError, load_pool, write_jsonl
from optscale.replay._report import markdown_summary, write_report
from optscale.replay._simulate import CALIBRATION, calibration_table, simulate_pool

__all__ = [
    "CALIBRATION",
    "DEFAULT_METHODS",
    "Evaluation",
    "Method",
    "PolicyMethod",
    "Pool",
    "PoolFormatError",
    "REFERENCES",
    "Rows",
    "Selected",
    "Setting",
    "Tables",
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
