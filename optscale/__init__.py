"""optscale: how many parallel LLM samples a question needs (the OptScale minimal-N bound)."""

from optscale._api import N_MAX_DEFAULT as N_MAX_DEFAULT
from optscale._api import best_of_n_prob as best_of_n_prob
from optscale._api import best_of_n_quantile as best_of_n_quantile
from optscale._api import cost_aware_samples as cost_aware_samples
from optscale._api import expected_best as expected_best
from optscale._api import fit_truncnorm as fit_truncnorm
from optscale._api import k_of_n_prob as k_of_n_prob
from optscale._api import min_samples as min_samples
from optscale._api import truncnorm_from_moments as truncnorm_from_moments
from optscale._backend import Float32Warning as Float32Warning
from optscale._backend import available_backends as available_backends
from optscale._backend import backend as backend
from optscale._backend import set_backend as set_backend
from optscale._beta import Beta as Beta
from optscale._beta import beta_from_moments as beta_from_moments
from optscale._distribution import TruncatedNormal as TruncatedNormal
from optscale._exceedance import exceedance_min_samples as exceedance_min_samples
from optscale._exceedance import exceedance_prob as exceedance_prob
from optscale._family import ScoreDistribution as ScoreDistribution
from optscale._family_fit import FAMILIES as FAMILIES
from optscale._family_fit import FamilyChoice as FamilyChoice
from optscale._family_fit import FamilyFit as FamilyFit
from optscale._family_fit import GoodnessOfFit as GoodnessOfFit
from optscale._family_fit import choose_family as choose_family
from optscale._family_fit import fit_family as fit_family
from optscale._family_fit import goodness_of_fit as goodness_of_fit
from optscale._fit import Fit as Fit
from optscale._fit import FitStatus as FitStatus
from optscale._fit import MomentStatus as MomentStatus
from optscale._mixture import TruncNormMixture as TruncNormMixture
from optscale._policy import OptScale as OptScale
from optscale._policy import OptScale0 as OptScale0
from optscale._policy import OptScaleT as OptScaleT
from optscale._policy import PolicyRun as PolicyRun
from optscale._policy import Stop as Stop
from optscale._policy_step import PolicyDecision as PolicyDecision
from optscale._policy_step import PolicyParams as PolicyParams
from optscale._policy_step import PolicyStepState as PolicyStepState
from optscale._policy_step import policy_init as policy_init
from optscale._policy_step import policy_observe as policy_observe
from optscale._policy_step import policy_step as policy_step
from optscale._relax import relaxed_min_samples as relaxed_min_samples
from optscale._selection import Selection as Selection
from optscale._solution import Solution as Solution
from optscale._solution import Status as Status
from optscale.policies import ASC as ASC
from optscale.policies import DSC as DSC
from optscale.policies import ESC as ESC
from optscale.policies import AnyOf as AnyOf
from optscale.policies import CostAware as CostAware
from optscale.policies import Decision as Decision
from optscale.policies import FixedN as FixedN
from optscale.policies import GainModel as GainModel
from optscale.policies import LeaderPosterior as LeaderPosterior
from optscale.policies import Policy as Policy
from optscale.policies import PolicyFileError as PolicyFileError
from optscale.policies import PolicyState as PolicyState
from optscale.policies import load_policy as load_policy
from optscale.policies import save_policy as save_policy
from optscale.sampling._run import RunResult as RunResult
from optscale.sampling._run import run as run
from optscale.sampling._run import run_batch as run_batch

__version__ = "0.1.0"

__all__ = [
    "ASC",
    "AnyOf",
    "Beta",
    "CostAware",
    "DSC",
    "Decision",
    "ESC",
    "FAMILIES",
    "FamilyChoice",
    "FamilyFit",
    "Fit",
    "FitStatus",
    "FixedN",
    "Float32Warning",
    "GainModel",
    "GoodnessOfFit",
    "LeaderPosterior",
    "MomentStatus",
    "N_MAX_DEFAULT",
    "OptScale",
    "OptScale0",
    "OptScaleT",
    "Policy",
    "PolicyDecision",
    "PolicyFileError",
    "PolicyParams",
    "PolicyRun",
    "PolicyState",
    "PolicyStepState",
    "RunResult",
    "ScoreDistribution",
    "Selection",
    "Solution",
    "Status",
    "Stop",
    "TruncNormMixture",
    "TruncatedNormal",
    "available_backends",
    "backend",
    "best_of_n_prob",
    "best_of_n_quantile",
    "beta_from_moments",
    "choose_family",
    "cost_aware_samples",
    "exceedance_min_samples",
    "exceedance_prob",
    "expected_best",
    "fit_family",
    "fit_truncnorm",
    "goodness_of_fit",
    "k_of_n_prob",
    "load_policy",
    "min_samples",
    "policy_init",
    "policy_observe",
    "policy_step",
    "relaxed_min_samples",
    "run",
    "run_batch",
    "save_policy",
    "set_backend",
    "truncnorm_from_moments",
]
