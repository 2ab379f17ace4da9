"""How many replicates and evaluation examples decide a claim, from a pilot run's variances.

A pilot (a setting's Heights, decisions.py) gives per t the replicates' variance s² of the
barrier height and, on a subset of n_p of the split's N examples, its example SE ē, so a
per-example variance v₁ = ē²·n_p / (1 − n_p/N). A study with R replicates on n examples then
has SE² = s²/R + v₁/n·(1 − n/N) (decisions.mean_se's form), with Welch's degrees of freedom.
Taking the pilot's means μ₀ as the truth, the power of the claim's test is

  no-barrier  (TOST, |μ| < δ at every t): Π_t [F((δ − μ₀)/SE − q) + F((δ + μ₀)/SE − q) − 1]⁺,
              q the one-sided t quantile at α (the product: every t must decide, taken as
              independent, which errs towards more replicates);
  barrier     (μ > c at the pilot's highest t): F((μ₀ − c)/SE − q),

F Student's t distribution (the shifted central t, which the non-central t approaches). For
each number of examples asked about, the planner gives the fewest replicates with the power.
"""

from __future__ import annotations

import math

import numpy as np

from linpath.analysis.decisions import ALPHA, DEFAULT_DELTA, Heights, cdf, quantile
from linpath.analysis.verdicts import BARRIER_THRESHOLD
from linpath.errors import LinpathError

CLAIMS = ("no-barrier", "barrier")
DEFAULT_POWER = 0.8
MAX_REPLICATES = 1000
PLAN_COLUMNS = ["setting", "claim", "quantity", "metric", "delta", "power_target", "examples", "replicates",
                "t", "se", "power"]  # fmt: skip


def pilot_variances(pilot: Heights, pilot_examples: int | None, population: int | None):
    """(μ₀, s², v₁) per t of the pilot (v₁ 0 when the pilot used the whole split)."""
    if len(pilot.replicates) < 2:
        raise LinpathError("a pilot needs at least 2 replicates to estimate their variance")
    mean = pilot.values.mean(0)
    rep_var = pilot.values.var(0, ddof=1)
    ex = pilot.se.mean(0) ** 2
    if not np.any(ex):
        return mean, rep_var, np.zeros_like(ex)
    if not pilot_examples or not population or pilot_examples >= population:
        raise LinpathError("a pilot on a subset needs its number of examples and the split's size")
    return mean, rep_var, ex * pilot_examples / (1 - pilot_examples / population)


def power(claim, mean, rep_var, per_example, replicates, examples, population, delta, threshold, alpha=ALPHA):
    """The claim's power (module docstring) with `replicates` on `examples`; and the SE per t."""
    ex = per_example / examples * (1 - examples / population) if population and np.any(per_example) else 0.0
    rep = rep_var / replicates
    se = np.sqrt(rep + ex)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(rep > 0, (rep + ex) ** 2 / (rep**2 / (replicates - 1)), np.inf)
    q = quantile(df, 1 - alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        if claim == "no-barrier":
            upper = cdf((delta - mean) / se - q, df) + cdf((delta + mean) / se - q, df) - 1
            each = np.where(se > 0, np.clip(upper, 0, 1), (np.abs(mean) < delta).astype(float))
            return float(np.prod(each)), se
        j = int(np.argmax(mean))
        each = cdf((mean[j] - threshold) / se[j] - q[j], df[j]) if se[j] > 0 else float(mean[j] > threshold)
        return float(each), se


def plan_rows(
    pilot: Heights,
    claim: str = "no-barrier",
    delta: float = DEFAULT_DELTA,
    target: float = DEFAULT_POWER,
    examples: list[int] | None = None,
    pilot_examples: int | None = None,
    population: int | None = None,
    threshold: float = BARRIER_THRESHOLD,
) -> list[dict]:
    """One row per number of examples (default: the pilot's): the fewest replicates whose
    power for the claim reaches `target` (replicates NaN when MAX_REPLICATES do not)."""
    if claim not in CLAIMS:
        raise LinpathError(f"unknown claim {claim!r} (known: {', '.join(CLAIMS)})")
    if not 0 < target < 1:
        raise LinpathError(f"the power must be between 0 and 1, got {target}")
    mean, rep_var, per_example = pilot_variances(pilot, pilot_examples, population)
    rows = []
    for n in examples or [pilot_examples or population or 0]:
        found, reached, se = math.nan, math.nan, None
        for r in range(2, MAX_REPLICATES + 1):
            p, se = power(claim, mean, rep_var, per_example, r, n, population, delta, threshold)
            if p >= target:
                found, reached = r, p
                break
        t = int(pilot.steps[np.argmax(se)]) if claim == "no-barrier" else int(pilot.steps[np.argmax(mean)])
        rows.append({"setting": pilot.setting, "claim": claim, "quantity": pilot.quantity, "metric": pilot.metric,
                     "delta": delta if claim == "no-barrier" else threshold, "power_target": target,
                     "examples": n, "replicates": found, "t": t, "se": float(np.max(se)), "power": reached})  # fmt: skip
    return rows
