"""Statistics that decide which configuration of an ablation wins, over repeated paired seeds.

Every configuration of an ablation is trained with the same seeds, and seed k gives the same data
order and initialisation streams in every configuration, so runs are compared *paired*: the
quantity of interest is the per-seed difference candidate - baseline, which cancels the part of
the seed-to-seed variation that the configurations share.

A run that diverged is recorded as None (or a non-finite number). It is excluded from means and
tests and counted separately, so that "never finishes" is reported rather than silently averaged.

The formulas are implemented here with numpy; `scipy.special` supplies only the distribution
functions (Student t and normal CDFs and the t quantile). The unit tests compare the results with
`scipy.stats` and check the intervals' coverage by simulation at 2-10 seeds.
All results are plain Python floats, ints, lists and None; a value that cannot be computed is
nan (None for an effect size) with a sentence in the result's `notes`, and
`cnnlab.experiments.compare.strict_json_ready` turns the nans into nulls for strict JSON.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
from scipy.special import ndtr, stdtr, stdtrit

Values = Iterable[float | None] | np.ndarray
CellKey = tuple[Hashable, ...]

# Above this many paired differences scipy.stats.wilcoxon (method="auto") always uses the normal
# approximation; at or below it, the exact null distribution when there are no ties and no zeros.
_WILCOXON_EXACT_MAX_N = 50
# With ties or zeros scipy enumerates all 2**n sign flips (a permutation test) when n <= 13,
# because 2**13 is below its default of 9999 resamples; the result is deterministic and exact.
_WILCOXON_PERMUTATION_MAX_N = 13
# Bootstrap resamples are drawn in blocks so memory stays bounded for long value lists.
_BOOTSTRAP_BLOCK_ELEMENTS = 1_000_000
# Every interval printed (means, paired differences, factorial effects) is a Student t interval
# at every n: a percentile bootstrap covered the truth 54% / 73% / 86% of the time at n = 2 / 3 / 5
# seeds instead of 95%, while the t interval is exact under normality at any n >= 2 and tends to
# the bootstrap's large-sample answer (both rest on the central limit theorem) as n grows.
CI_METHOD = "student-t"

NAN = float("nan")


# --------------------------------------------------------------------------------------------
# Input handling


def _is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def _finite_array(values: Values) -> np.ndarray:
    """The finite values as float64; None and non-finite entries (diverged runs) are dropped."""
    return np.asarray([float(v) for v in values if _is_finite(v)], dtype=np.float64)


def _paired_differences(a: Values, b: Values) -> np.ndarray:
    """b - a for paired samples of equal length (no diverged entries allowed here)."""
    a_arr = np.asarray(list(a), dtype=np.float64)
    b_arr = np.asarray(list(b), dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ValueError(f"paired samples need equal 1-d lengths, got {a_arr.shape} and "
                         f"{b_arr.shape}")
    # Accuracies are ratios of small integers: 0.972 - 0.937 is not the same double for every
    # seed, and that rounding noise must not pass for variance (a t of 1e15 instead of inf).
    return np.round(b_arr - a_arr, 12)


def _is_constant(d: np.ndarray) -> bool:
    """True when all entries are equal, tested exactly.

    np.std of identical values can come out as a tiny non-zero number (the mean is rounded), so
    zero variance is detected by comparing entries rather than by std == 0.
    """
    return bool(np.all(d == d[0]))


# --------------------------------------------------------------------------------------------
# Descriptive statistics


def accuracy_difference_noise(accuracy: float, images: int) -> float:
    """The standard error of the difference of two accuracies near `accuracy`, each measured on
    `images` validation images: sqrt(2 p (1 - p) / n)."""
    return math.sqrt(2.0 * accuracy * (1.0 - accuracy) / images)


def bootstrap_ci(values: Values, confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    Not used for any printed interval: at 2-10 values it is too narrow (it covered the truth
    about half the time at n = 2); `t_interval` is. Kept for callers with many values.

    Resamples the values with replacement `resamples` times and returns the (1-c)/2 and (1+c)/2
    quantiles of the resampled means. Deterministic for a given seed. Diverged entries (None,
    non-finite) are ignored. One value gives (v, v); no values give (nan, nan).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    x = _finite_array(values)
    n = x.size
    if n == 0:
        return (NAN, NAN)
    if n == 1:
        return (float(x[0]), float(x[0]))
    means = _bootstrap_means(x, resamples, np.random.default_rng(seed))
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def _bootstrap_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = x.size
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    return means


def t_interval(values: Values, confidence: float = 0.95) -> tuple[float, float]:
    """Student t confidence interval of the mean: mean +- t(n-1, (1+c)/2) * std(ddof=1)/sqrt(n).

    Exact coverage when the values are normal, at every n >= 2, which is what seed counts of 2-10
    need (tests/unit/test_statistics.py checks it by simulation). Diverged entries (None,
    non-finite) are ignored. Fewer than two values give (nan, nan): one seed says nothing about
    the seed-to-seed spread, so no interval is claimed.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _finite_array(values)
    n = x.size
    if n < 2:
        return (NAN, NAN)
    mean = float(np.mean(x))
    if _is_constant(x):
        return (mean, mean)
    half = float(stdtrit(n - 1, (1.0 + confidence) / 2.0) * np.std(x, ddof=1) / math.sqrt(n))
    return (mean - half, mean + half)


def describe(values: Values) -> dict:
    """n, mean, std (ddof=1), t CI of the mean, min, max and the number of diverged runs.

    None and non-finite values are diverged runs: counted in `diverged`, excluded from the rest.
    `notes` says why a value is missing (nan): no finished run, or one run (no spread, no CI).
    """
    values = list(values)
    x = _finite_array(values)
    n = int(x.size)
    if n == 0:
        reason = "no run finished with a finite value"
        return {"n": 0, "mean": NAN, "std": NAN, "ci": [NAN, NAN], "ci_method": CI_METHOD,
                "min": NAN, "max": NAN, "diverged": len(values),
                "notes": {key: reason for key in ("mean", "std", "ci", "min", "max")}}
    notes = {}
    if n == 1:
        notes["ci"] = "one finished run: no seed-to-seed spread to build an interval from"
    return {
        "n": n,
        "mean": float(np.mean(x)),
        "std": float(np.std(x, ddof=1)) if n > 1 else 0.0,
        "ci": list(t_interval(x)),
        "ci_method": CI_METHOD,
        "min": float(np.min(x)),
        "max": float(np.max(x)),
        "diverged": len(values) - n,
        "notes": notes,
    }


# --------------------------------------------------------------------------------------------
# Paired tests and effect size


def paired_t_test(a: Values, b: Values) -> dict:
    """Two-sided paired t-test on the differences d = b - a.

    t = mean(d) / (std(d, ddof=1) / sqrt(n)) with n - 1 degrees of freedom; the p-value is
    2 * P(T <= -|t|). Zero variance of d, where the formula divides by zero, is resolved
    explicitly: all d == 0 gives t = 0, p = 1 (no evidence of a difference); constant non-zero d
    gives t = +-inf, p = 0 (every pair moved by exactly the same amount). Fewer than two pairs
    give nan.
    """
    d = _paired_differences(a, b)
    n = d.size
    if n < 2:
        return {"t": NAN, "df": max(n - 1, 0), "p_value": NAN}
    df = n - 1
    if _is_constant(d):
        if d[0] == 0:
            return {"t": 0.0, "df": df, "p_value": 1.0}
        return {"t": math.copysign(math.inf, d[0]), "df": df, "p_value": 0.0}
    t = float(np.mean(d) / (np.std(d, ddof=1) / math.sqrt(n)))
    p = float(2.0 * stdtr(df, -abs(t)))
    return {"t": t, "df": df, "p_value": min(p, 1.0)}


def cohens_dz(a: Values, b: Values) -> float:
    """Paired effect size d_z = mean(d) / std(d, ddof=1) for d = b - a.

    0.0 when every d is 0, +-inf when d is constant and non-zero, nan with fewer than 2 pairs.
    """
    d = _paired_differences(a, b)
    if d.size < 2:
        return NAN
    if _is_constant(d):
        return 0.0 if d[0] == 0 else math.copysign(math.inf, d[0])
    return float(np.mean(d) / np.std(d, ddof=1))


# --------------------------------------------------------------------------------------------
# Wilcoxon signed-rank test


def _average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n of x with ties given their average rank, and the size of each tie group."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    midranks = (ends - counts + 1 + ends) / 2.0
    return midranks[inverse.ravel()], counts


def _subset_sum_counts(weights: np.ndarray) -> np.ndarray:
    """counts[s] = number of subsets of `weights` (positive ints) whose sum is s.

    This is the null distribution of the signed-rank statistic times 2**n: under H0 each rank
    carries a positive sign independently with probability 1/2, so W+ is the sum of a uniformly
    random subset of the ranks. Built one weight at a time (include it or not).
    """
    counts = np.zeros(int(weights.sum()) + 1, dtype=np.int64)
    counts[0] = 1
    for w in (int(v) for v in weights):
        counts[w:] = counts[w:] + counts[:-w]  # the right side is evaluated before assigning
    return counts


def _exact_two_sided_p(weights: np.ndarray, observed: int) -> float:
    """2 * min(P(W <= observed), P(W >= observed)) under the sign-flip null, capped at 1."""
    counts = _subset_sum_counts(weights)
    total = int(counts.sum())
    lower = int(counts[:observed + 1].sum())
    upper = int(counts[observed:].sum())
    return min(1.0, 2.0 * min(lower, upper) / total)


def _normal_two_sided_p(w_plus: float, n: int, tie_sizes: np.ndarray) -> float:
    """Normal approximation of W+ with the tie-corrected variance and no continuity correction."""
    mean = n * (n + 1) / 4.0
    var = (n * (n + 1) * (2 * n + 1) - np.sum(tie_sizes ** 3 - tie_sizes) / 2.0) / 24.0
    z = (w_plus - mean) / math.sqrt(var)
    return float(min(1.0, 2.0 * ndtr(-abs(z))))


def wilcoxon_signed_rank(a: Values, b: Values) -> dict:
    """Two-sided Wilcoxon signed-rank test on d = b - a, matching `scipy.stats.wilcoxon` defaults.

    Zero differences are dropped (zero_method="wilcox"); the remaining n are ranked by |d| with
    average ranks for ties, and W+ / W- are the rank sums of the positive / negative differences.
    The reported statistic is min(W+, W-). The p-value follows scipy's method="auto" as of scipy
    1.17, where the choice depends on the *total* number of pairs N (zeros included):

    - "exact": N <= 50, no zeros and no ties. The null distribution of W+ (a uniformly random
      subset sum of the ranks 1..n) is computed by dynamic programming over the ranks;
      p = 2 * min(P(W+ <= w), P(W+ >= w)), capped at 1.
    - "exact-ties": N <= 13 with zeros or ties. scipy runs a permutation test over all 2**N sign
      flips, which is exact and deterministic at this size; the same distribution is computed
      here by the dynamic programme over doubled average ranks (which are integers).
    - "normal": otherwise. z = (W+ - n(n+1)/4) / sigma with
      sigma**2 = (n(n+1)(2n+1) - sum(t**3 - t)/2) / 24 over tie groups of size t, and no
      continuity correction (scipy's default correction=False); p = 2 * Phi(-|z|).

    All differences zero gives statistic 0.0 and p 1.0; no pairs at all give nan.
    The key `method` names the branch taken.
    """
    d = _paired_differences(a, b)
    total = d.size
    if total == 0:
        return {"statistic": NAN, "p_value": NAN, "method": "none"}
    nonzero = d[d != 0]
    n = nonzero.size
    if n == 0:
        return {"statistic": 0.0, "p_value": 1.0, "method": "all-zero"}
    ranks, tie_sizes = _average_ranks(np.abs(nonzero))
    w_plus = float(ranks[nonzero > 0].sum())
    w_minus = float(ranks[nonzero < 0].sum())
    has_ties = bool(np.any(tie_sizes > 1))
    has_zeros = n < total
    if total <= _WILCOXON_EXACT_MAX_N and not (has_ties or has_zeros):
        method = "exact"
        p = _exact_two_sided_p(ranks.astype(np.int64), int(w_plus))
    elif total <= _WILCOXON_PERMUTATION_MAX_N:
        method = "exact-ties"
        p = _exact_two_sided_p(np.rint(2 * ranks).astype(np.int64), int(round(2 * w_plus)))
    else:
        method = "normal"
        p = _normal_two_sided_p(w_plus, n, tie_sizes)
    return {"statistic": min(w_plus, w_minus), "p_value": p, "method": method}


# --------------------------------------------------------------------------------------------
# Multiple comparisons


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    With the m p-values sorted ascending, p_(i) (i = 1..m) is adjusted to
    max over j <= i of (m - j + 1) * p_(j), capped at 1. The running maximum keeps the adjusted
    values monotone in the raw ones, so rejecting at adjusted p < alpha is exactly Holm's
    procedure. nan entries (comparisons that could not be tested) stay nan and do not count in m.
    """
    p = np.asarray([float(v) for v in p_values], dtype=np.float64)
    adjusted = np.full(p.shape, NAN)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted.tolist()
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return [float(v) for v in adjusted]


# --------------------------------------------------------------------------------------------
# Comparing two configurations over seeds


def _common_finite_seeds(runs: Sequence[Mapping[int, float | None]]) -> list[int]:
    """Seeds present with a finite value in every one of `runs`, in the first run's order."""
    return [seed for seed in runs[0]
            if all(seed in run and _is_finite(run[seed]) for run in runs)]


def sign_flip_floor(n: int) -> float:
    """The smallest two-sided p an exact sign-flip test can reach with n pairs: 2 / 2**n.

    Only "every sign +" and "every sign -" are as extreme as n equal differences, so at n = 3
    no outcome is rarer than p = 0.25, and n >= 6 pairs are needed to get below 0.05.
    """
    return min(1.0, 2.0 ** (1 - n)) if n >= 1 else 1.0


def compare_paired(baseline: Mapping[int, float | None], candidate: Mapping[int, float | None],
                   higher_is_better: bool = True, alpha: float = 0.05,
                   confidence: float = 0.95) -> dict:
    """Paired comparison of candidate against baseline over the seeds both finished.

    `baseline` and `candidate` map seed -> value, None or non-finite for a diverged run. The
    result holds n (pairs), diff (mean of candidate - baseline), diff_ci (Student t interval of
    the mean difference at `confidence`), p_value and the test behind it (p_method), p_wilcoxon
    and effect_size (Cohen's d_z).

    p_value is the paired t-test's, except when every paired difference is equal: the t test
    then has no spread to estimate (its t is infinite and its p 0, which overstates three equal
    differences), so the exact sign-flip test is used, whose p is 2 / 2**n (0.25 at n = 3);
    `p_floor` records that smallest reachable p. A value that cannot be computed is nan (None
    for the effect size) and `notes[key]` says why, so JSON output can carry null plus a reason.

    Whether a p-value is small enough depends on how many comparisons were made, so `p_holm`
    and `verdict` are left as None here and filled by `finalize_verdicts` over the whole family.
    `higher_is_better` and `alpha` are recorded in the result so a saved comparison says how it
    is to be read; `finalize_verdicts` overwrites them with the values it actually applied.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    seeds = _common_finite_seeds([baseline, candidate])
    a = np.asarray([float(baseline[s]) for s in seeds], dtype=np.float64)
    b = np.asarray([float(candidate[s]) for s in seeds], dtype=np.float64)
    n = len(seeds)
    d = _paired_differences(a, b)
    notes: dict[str, str] = {}
    p_value, p_method, p_floor, p_wilcoxon = NAN, "none", None, NAN
    effect: float | None = NAN
    if n < 2:
        reason = (f"{n} seed{'' if n == 1 else 's'} finished in both: a paired test needs at "
                  "least 2")
        for key in ("diff_ci", "p_value", "p_wilcoxon", "effect_size"):
            notes[key] = reason
        if n == 0:
            notes["diff"] = reason
        effect = None
    else:
        p_wilcoxon = wilcoxon_signed_rank(a, b)["p_value"]
        if not _is_constant(d):
            p_value, p_method = paired_t_test(a, b)["p_value"], "paired t"
            effect = cohens_dz(a, b)
        elif d[0] == 0:
            p_value, p_method, effect = 1.0, "all differences zero", 0.0
        else:
            p_value, p_method = sign_flip_floor(n), "sign-flip"
            p_floor = sign_flip_floor(n)
            notes["p_value"] = (f"all {n} paired differences are equal ({d[0]:+.6g}); the t test "
                                "has no spread to use, so this is the exact sign-flip p, which "
                                f"cannot go below 2/2^{n} = {p_floor:.3g}")
            effect = None
            notes["effect_size"] = (f"all {n} paired differences are equal, so their spread is 0 "
                                    "and d_z = mean / spread is undefined")
    return {
        "n": n,
        "seeds": list(seeds),
        "diff": float(np.mean(d)) if n else NAN,
        "diff_ci": list(t_interval(d, confidence)),
        "ci_method": CI_METHOD,
        "ci_confidence": float(confidence),
        "p_value": p_value,
        "p_method": p_method,
        "p_floor": p_floor,
        "p_wilcoxon": p_wilcoxon,
        "effect_size": effect,
        "higher_is_better": bool(higher_is_better),
        "alpha": float(alpha),
        "p_holm": None,
        "verdict": None,
        "notes": notes,
    }


def _verdict(result: Mapping, p_holm: float, higher_is_better: bool, alpha: float) -> str:
    """"better"/"worse" only when the Holm-adjusted p is below alpha; otherwise say why not.

    With a t-test p, p < alpha is the same event as the (1 - alpha) t interval of the mean
    difference excluding 0, so a "better" always comes with an interval clear of zero.
    """
    n, diff = int(result["n"]), float(result["diff"])
    if n >= 2 and not math.isnan(p_holm) and p_holm < alpha and diff != 0:
        return "better" if (diff > 0) == higher_is_better else "worse"
    floor = result.get("p_floor")
    if floor is not None and floor >= alpha:
        return f"not enough seeds to tell (n={n}, smallest possible p={floor:.3g})"
    return f"no detectable difference at n={n}"


def finalize_verdicts(comparisons: Sequence[Mapping], higher_is_better: bool = True,
                      alpha: float = 0.05) -> list[dict]:
    """Holm-adjust the comparisons' p-values as one family and give each a verdict.

    "better" / "worse" when the Holm-adjusted p is below alpha, by the sign of `diff` and
    `higher_is_better`; "not enough seeds to tell (n=N, smallest possible p=P)" when the test
    used (the sign-flip test of equal differences) cannot reach alpha at that n; otherwise
    "no detectable difference at n=N". Comparisons with fewer than two pairs are not tested:
    their p-values are nan and they do not enlarge the family.
    Returns new dicts; the input is not modified.
    """
    results = [copy.deepcopy(dict(c)) for c in comparisons]
    for result in results:
        result["higher_is_better"] = bool(higher_is_better)
        result["alpha"] = float(alpha)
        if int(result["n"]) < 2:
            result["p_value"] = NAN
            result["p_wilcoxon"] = NAN
    adjusted = holm([float(r["p_value"]) for r in results])
    for result, p_holm in zip(results, adjusted):
        result["p_holm"] = p_holm
        if math.isnan(p_holm):
            result.setdefault("notes", {})["p_holm"] = "not tested (fewer than 2 paired seeds)"
        result["verdict"] = _verdict(result, p_holm, higher_is_better, alpha)
    return results


# --------------------------------------------------------------------------------------------
# Factorial designs


def _factor_levels(keys: Iterable[CellKey], n_factors: int) -> list[list[Hashable]]:
    """Each factor's levels in order of first appearance; the first one is the baseline."""
    levels: list[list[Hashable]] = [[] for _ in range(n_factors)]
    for key in keys:
        for i, level in enumerate(key):
            if level not in levels[i]:
                levels[i].append(level)
    return levels


def _other_combinations(levels: list[list[Hashable]],
                        fixed: Sequence[int]) -> list[dict[int, Hashable]]:
    """All level combinations of the factors not in `fixed`, as {factor index: level}."""
    others = [i for i in range(len(levels)) if i not in fixed]
    return [dict(zip(others, combo)) for combo in itertools.product(*(levels[i] for i in others))]


def _cell_key(n_factors: int, assigned: Mapping[int, Hashable]) -> CellKey:
    return tuple(assigned[i] for i in range(n_factors))


def _contrast(cells: Mapping[CellKey, Mapping[int, float | None]],
              terms: list[tuple[float, CellKey]]) -> dict | None:
    """Per-seed sum of weight * value(cell) over `terms`, then its mean and Student t CI.

    Every effect of a factorial design is such a linear contrast of cell values. Computing it
    per seed before averaging keeps the seeds paired across cells. None if a cell is missing;
    only seeds with a finite value in every involved cell are used. The t interval of per-seed
    contrasts is exact under normality, the seeds being independent and paired across cells.
    """
    if any(key not in cells for _, key in terms):
        return None
    seeds = _common_finite_seeds([cells[key] for _, key in terms])
    per_seed = np.asarray([sum(w * float(cells[key][s]) for w, key in terms) for s in seeds],
                          dtype=np.float64)
    stats = {
        "effect": float(np.mean(per_seed)) if per_seed.size else NAN,
        "ci": list(t_interval(per_seed)),
        "ci_method": CI_METHOD,
        "n": int(per_seed.size),
    }
    if per_seed.size < 2:
        stats["notes"] = {"ci": f"{per_seed.size} seed(s) finite in every cell involved: an "
                                "interval needs at least 2"}
    return stats


def _main_effect_terms(levels: list[list[Hashable]], factor: int,
                       level: Hashable) -> list[tuple[float, CellKey]]:
    """Weights for mean over the other factors of value(level) - value(baseline level)."""
    combos = _other_combinations(levels, [factor])
    weight = 1.0 / len(combos)
    terms: list[tuple[float, CellKey]] = []
    for combo in combos:
        terms.append((weight, _cell_key(len(levels), {**combo, factor: level})))
        terms.append((-weight, _cell_key(len(levels), {**combo, factor: levels[factor][0]})))
    return terms


def _interaction_terms(levels: list[list[Hashable]], fa: int, la: Hashable, fb: int,
                       lb: Hashable) -> list[tuple[float, CellKey]]:
    """Weights for the difference-in-differences of (la, lb) against the two baselines,
    averaged over the remaining factors' levels."""
    a0, b0 = levels[fa][0], levels[fb][0]
    combos = _other_combinations(levels, [fa, fb])
    weight = 1.0 / len(combos)
    terms: list[tuple[float, CellKey]] = []
    for combo in combos:
        for level_a, level_b, sign in ((la, lb, 1.0), (la, b0, -1.0), (a0, lb, -1.0),
                                       (a0, b0, 1.0)):
            key = _cell_key(len(levels), {**combo, fa: level_a, fb: level_b})
            terms.append((sign * weight, key))
    return terms


def factorial_effects(cells: Mapping[CellKey, Mapping[int, float | None]],
                      factor_names: Sequence[str]) -> dict:
    """Main effects and two-way interactions of a full-factorial ablation, paired over seeds.

    `cells` maps a tuple of levels (one per factor, in `factor_names` order) to {seed: value}.
    Each factor's baseline is its first level in order of appearance among the keys.

    - main: for each factor and non-baseline level L, per seed the mean over the other factors'
      level combinations of value(L) - value(baseline), then the mean and t CI over
      seeds. Entries {"factor", "level", "baseline", "effect", "ci", "n"}.
    - interactions: for each pair of factors A, B and non-baseline levels La, Lb, per seed the
      mean over the remaining factors of (v(La,Lb) - v(La,b0)) - (v(a0,Lb) - v(a0,b0)): how much
      the effect of B changes when A is switched. Entries {"factors", "levels", "effect", "ci",
      "n"}.

    Effects that need a missing cell are skipped; n counts the seeds finite in all their cells.
    """
    k = len(factor_names)
    for key in cells:
        if len(key) != k:
            raise ValueError(f"cell {key!r} has {len(key)} levels, expected {k} "
                             f"({list(factor_names)})")
    levels = _factor_levels(cells.keys(), k)
    main = []
    for f in range(k):
        for level in levels[f][1:]:
            stats = _contrast(cells, _main_effect_terms(levels, f, level))
            if stats is not None:
                main.append({"factor": factor_names[f], "level": level,
                             "baseline": levels[f][0], **stats})
    interactions = []
    for fa, fb in itertools.combinations(range(k), 2):
        for la, lb in itertools.product(levels[fa][1:], levels[fb][1:]):
            stats = _contrast(cells, _interaction_terms(levels, fa, la, fb, lb))
            if stats is not None:
                interactions.append({"factors": [factor_names[fa], factor_names[fb]],
                                     "levels": [la, lb], **stats})
    return {"main": main, "interactions": interactions}
