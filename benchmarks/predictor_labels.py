"""Numbers behind the prior predictor's label space (raw moments vs truncated-normal params).

    python benchmarks/predictor_labels.py [--data ../shared/data/optscale-ref]

The labels are raw (mean, std) of PRM scores in [0, 1]. This prints how many of them a
truncated normal on [0, 1] can reproduce at all, where moment matching puts the rest, and how
(mu, sigma) labels would behave as regression targets.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import optscale  # noqa: E402
from optscale.predictor import load_score_stats  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "optscale-ref"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT))
    args = parser.parse_args()
    from scipy.stats import spearmanr

    s = load_score_stats(args.data)
    mu, sigma, status = (np.asarray(v, np.float64) for v in
                         optscale.truncnorm_from_moments(s.mean, s.std))
    ok = status == optscale.MomentStatus.OK
    tn = optscale.TruncatedNormal(mu, sigma)
    back_mean = np.asarray(tn.mean, np.float64)
    back_std = np.sqrt(np.asarray(tn.variance, np.float64))
    mu_hi = mu.max()
    print(f"questions: {len(mu)}")
    print(f"moment matching OK: {ok.mean():.1%}, IMPOSSIBLE: {(~ok).mean():.1%}")
    print(f"mu at the search box's upper bound ({mu_hi:.2f}): {(mu >= mu_hi - 1e-6).mean():.1%} "
          f"(OK rows: {(mu[ok] >= mu_hi - 1e-6).mean():.1%})")
    print(f"round trip |std - std(TN(mu, sigma))|, IMPOSSIBLE rows: median "
          f"{np.median(np.abs(back_std - s.std)[~ok]):.4f}, 95% "
          f"{np.percentile(np.abs(back_std - s.std)[~ok], 95):.4f} "
          f"(label std median {np.median(s.std):.4f})")
    print(f"round trip |mean - mean(TN)| max: {np.abs(back_mean - s.mean).max():.2e}")
    for name, v in (("mean", s.mean), ("std", s.std), ("mu", mu), ("sigma", sigma)):
        q = np.percentile(v, [5, 50, 95])
        print(f"{name:>5}: 5/50/95% = {q[0]:.4f} / {q[1]:.4f} / {q[2]:.4f}, "
              f"sd {v.std():.4f}, coefficient of variation {v.std() / abs(v.mean()):.2f}")
    print(f"Spearman(mean, mu) = {spearmanr(s.mean, mu).statistic:.3f}, "
          f"Spearman(std, sigma) = {spearmanr(s.std, sigma).statistic:.3f}, "
          f"Spearman(std, mu) = {spearmanr(s.std, mu).statistic:.3f}")
    # How far mu moves for a small error in the predicted mean, on the matchable rows.
    eps = 0.005
    mu2, _, _ = optscale.truncnorm_from_moments(np.minimum(s.mean + eps, 0.9999), s.std)
    dmu = np.abs(np.asarray(mu2, np.float64) - mu)[ok]
    print(f"|d mu| for a +{eps} error in the mean (OK rows): median {np.median(dmu):.3f}, "
          f"95% {np.percentile(dmu, 95):.3f} (mu sd {mu.std():.3f})")


if __name__ == "__main__":
    main()
