"""Policies: a stopping rule and a selection rule behind one online contract.

Every method (fixed N, self-consistency, ESC, ASC, DSC, the OptScale variants, the answer-level
posterior rule, the cost-aware rule and hybrids) is a :class:`Policy` with
``start`` / ``update(state, scores, answers, tokens) -> Decision``; ``optscale.run``, the replay
harness and ``optscale serve`` drive them the same way. Policy files (``optscale tune``) hold one
of them with its provenance.
"""

from optscale.policies._base import Decision as Decision
from optscale.policies._base import Policy as Policy
from optscale.policies._base import PolicyState as PolicyState
from optscale.policies._cost import CostAware as CostAware
from optscale.policies._cost import GainModel as GainModel
from optscale.policies._file import PolicyFile as PolicyFile
from optscale.policies._file import PolicyFileError as PolicyFileError
from optscale.policies._file import kinds as kinds
from optscale.policies._file import load_policy as load_policy
from optscale.policies._file import policy_from_dict as policy_from_dict
from optscale.policies._file import read_policy_file as read_policy_file
from optscale.policies._file import save_policy as save_policy
from optscale.policies._hybrid import AnyOf as AnyOf
from optscale.policies._leader import LeaderPosterior as LeaderPosterior
from optscale.policies._leader import hold_probability as hold_probability
from optscale.policies._rules import ASC as ASC
from optscale.policies._rules import DSC as DSC
from optscale.policies._rules import ESC as ESC
from optscale.policies._rules import FixedN as FixedN
from optscale.policies._rules import asc_stop_probability as asc_stop_probability

__all__ = [
    "ASC", "DSC", "ESC", "AnyOf", "CostAware", "Decision", "FixedN", "GainModel",
    "LeaderPosterior", "Policy", "PolicyFile", "PolicyFileError", "PolicyState",
    "asc_stop_probability", "hold_probability", "kinds", "load_policy", "policy_from_dict",
    "read_policy_file", "save_policy",
]
