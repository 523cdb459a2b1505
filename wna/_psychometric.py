"""Psychometric functions fitted to binomial counts by maximum likelihood (Wichmann & Hill, 2001).

The model of the fraction of "yes" answers at stimulus level ``x`` is

    p(x) = guess + (1 - guess - lapse) * F((x - threshold) / scale)

with ``F`` the standard normal CDF (``"gaussian"``, a cumulative Gaussian:
the exact form of known answer 5 in ``book/methods.md``) or the logistic function. ``threshold``
is where ``F`` is one half; ``scale`` is the Gaussian's standard deviation
(or the logistic's scale); ``slope`` is ``dp/dx`` at the threshold,
``(1 - guess - lapse) * F'(0) / scale``. Guess and lapse rates are fixed,
not fitted (0 and 0 by default).

Confidence intervals are Wald intervals from the expected Fisher information
of the binomial likelihood at the fit, ``I = sum_i n_i p'_i p'_i^T / (p_i (1 - p_i))``
(asymptotic; no bootstrap): ``threshold ± z se``, and for the scale
``exp(log scale ± z se_log)`` so that it stays positive; the slope's interval
is the scale's mapped through ``slope = c / scale``. They are trustworthy when
the threshold lies inside the sampled levels and several levels fall on the
curve's rise; a fit whose threshold or scale ends on the search bounds (a flat
curve, a threshold far outside the levels) has ``at_bound`` set and NaN
intervals.

:func:`fit_curve` fits the same function with psignifit 4 (Schütt et al., 2016:
Bayesian, with credible intervals; the field's standard), guess, lapse and
overdispersion fixed at 0 (a network does not lapse, and its trials are
exactly binomial), threshold and width free on a grid fine enough for
curves of thousands of trials (:data:`PSIGNIFIT_GRID`). psignifit is GPL-3 and an optional extra
(``pip install wna[fits]``), imported only when used; without it, and for a
flat curve whose threshold only psignifit's prior would place (the
maximum-likelihood fit ends on its bounds), :func:`fit_curve` returns the
maximum-likelihood fit and says so in ``method`` and ``note``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

__all__ = ["PsychometricFit", "fit_psychometric", "fit_curve", "psychometric_function", "SHAPES", "METHODS",
           "PSIGNIFIT_FIXED", "PSIGNIFIT_GRID"]

SHAPES = ("gaussian", "logistic")
METHODS = ("psignifit", "ml")
# psignifit's fixed parameters: no guess, no lapse (a network does not lapse) and no overdispersion
# (a network's trials are independent draws with one probability per level: exactly binomial, the
# model the maximum-likelihood fit assumes too).
PSIGNIFIT_FIXED = {"gamma": 0.0, "lambda": 0.0, "eta": 0.0}
# Its grid over threshold and width. The default 40 x 40 is too coarse for a network's curves of
# thousands of trials a level: on a simulated curve of 21 x 1,000 trials, its 95% interval of the
# threshold was 1.4 times as wide as the likelihood's (and lopsided); 200 x 100 brings it to 1.03.
PSIGNIFIT_GRID = {"threshold": 200, "width": 100}
_EPS = 1e-12


def _cdf_pdf(z: np.ndarray, shape: str) -> tuple[np.ndarray, np.ndarray]:
    if shape == "gaussian":
        return special.ndtr(z), np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    f = special.expit(z)
    return f, f * (1 - f)


def psychometric_function(x, threshold: float, scale: float, *, shape: str = "gaussian",
                          guess: float = 0.0, lapse: float = 0.0) -> np.ndarray:
    """``p(x) = guess + (1 - guess - lapse) F((x - threshold) / scale)`` (see the module docstring)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    z = (np.asarray(x, dtype=np.float64) - threshold) / scale
    return guess + (1 - guess - lapse) * _cdf_pdf(z, shape)[0]


@dataclass(frozen=True)
class PsychometricFit:
    """A fitted psychometric function: the estimates, their standard errors and Wald intervals.

    ``threshold_ci``, ``scale_ci`` and ``slope_ci`` are ``(low, high)`` at
    level ``ci``; ``se`` holds the standard errors of ``threshold`` and of
    ``log(scale)``. ``at_bound``: the estimate ended on the search bounds
    (intervals NaN). ``nll``: the binomial negative log-likelihood at the fit.
    ``converged``: the optimiser stopped at a point where a Newton step
    would move the estimates by less than 1e-3 standard errors.
    ``extrapolated``: the threshold lies outside the sampled levels (a curve
    already past one half at the lowest level, say); its interval then
    rests on the assumed shape of the curve beyond the data. ``method``:
    "ml" (:func:`fit_psychometric`) or "psignifit" (:func:`fit_curve`);
    ``note`` says why a psignifit fit was asked for and the maximum-likelihood
    fit given ("" otherwise).
    """

    threshold: float
    scale: float
    slope: float
    threshold_ci: tuple[float, float]
    scale_ci: tuple[float, float]
    slope_ci: tuple[float, float]
    se: dict
    shape: str
    guess: float
    lapse: float
    ci: float
    nll: float
    at_bound: bool
    converged: bool
    extrapolated: bool
    method: str = "ml"
    note: str = ""

    def __call__(self, x) -> np.ndarray:
        """The fitted curve at levels ``x``."""
        return psychometric_function(x, self.threshold, self.scale, shape=self.shape, guess=self.guess,
                                     lapse=self.lapse)


def _check(levels, hits, trials, guess, lapse, ci, shape):
    x = np.asarray(levels, dtype=np.float64).ravel()
    y = np.asarray(hits, dtype=np.float64).ravel()
    n = np.asarray(trials, dtype=np.float64).ravel()
    if not (x.shape == y.shape == n.shape) or len(x) < 2:
        raise ValueError(f"need levels, hits and trials of one length >= 2, got {x.shape}, {y.shape}, {n.shape}")
    if not (np.isfinite(x).all() and (n >= 1).all() and (y >= 0).all() and (y <= n).all()):
        raise ValueError("levels must be finite, trials >= 1 and 0 <= hits <= trials")
    if np.ptp(x) == 0:
        raise ValueError("need at least two different levels")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if not (0 <= guess and 0 <= lapse and guess + lapse < 1):
        raise ValueError(f"need guess, lapse >= 0 and guess + lapse < 1, got {guess}, {lapse}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    return x, y, n


def fit_psychometric(levels, hits, trials, *, shape: str = "gaussian", guess: float = 0.0,
                     lapse: float = 0.0, ci: float = 0.95) -> PsychometricFit:
    """Maximum-likelihood fit of ``p(x)`` to ``hits`` out of ``trials`` at each of ``levels``.

    Free parameters: ``threshold`` (searched within the levels' range widened
    by twice its span on each side) and ``scale`` (within 1e-3 to 10 times the
    span), optimised in ``(threshold, log scale)`` by scipy's TNC from the best
    point of a coarse grid. Intervals: see the module docstring.
    """
    x, y, n = _check(levels, hits, trials, guess, lapse, ci, shape)
    span, amp = float(np.ptp(x)), 1 - guess - lapse
    bounds = [(x.min() - 2 * span, x.max() + 2 * span), (math.log(1e-3 * span), math.log(10 * span))]

    def parts(theta):
        t, s = theta[0], math.exp(theta[1])
        z = (x - t) / s
        F, f = _cdf_pdf(z, shape)
        p = np.clip(guess + amp * F, _EPS, 1 - _EPS)
        return p, amp * f, z, s

    def nll(theta):
        p, dp, z, s = parts(theta)
        value = -float(np.sum(y * np.log(p) + (n - y) * np.log1p(-p)))
        w = -(y - n * p) / (p * (1 - p)) * dp  # d nll / d eta, eta = (x - t) / s
        return value, np.array([float(np.sum(w * (-1 / s))), float(np.sum(w * (-z)))])

    grid = [(t, ls) for t in np.linspace(*bounds[0], 25) for ls in np.linspace(*bounds[1], 9)]
    start = min(grid, key=lambda th: nll(th)[0])
    res = optimize.minimize(nll, np.array(start), jac=True, method="TNC", bounds=bounds)
    t, log_s = (float(v) for v in res.x)
    s = math.exp(log_s)
    at_bound = any(min(abs(v - lo), abs(v - hi)) < 1e-6 * (hi - lo) for v, (lo, hi) in zip(res.x, bounds))

    # expected Fisher information in (threshold, log scale)
    p, dp, z, _ = parts(res.x)
    grad = np.stack([dp * (-1 / s), dp * (-z)])  # dp/dt, dp/dlog s
    info = (grad * (n / (p * (1 - p)))) @ grad.T
    c = amp * float(_cdf_pdf(np.zeros(1), shape)[1][0])
    q = float(stats.norm.ppf(0.5 + ci / 2))
    nan2 = (math.nan, math.nan)
    try:
        cov = np.linalg.inv(info)
        se_t, se_ls = math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1])
        g = nll(res.x)[1]
        converged = bool(res.success) or float(g @ cov @ g) < 1e-6  # a Newton step of < 1e-3 s.e.
    except (np.linalg.LinAlgError, ValueError):
        se_t = se_ls = math.nan
        converged = bool(res.success)
    if at_bound or not (math.isfinite(se_t) and math.isfinite(se_ls)):
        t_ci = s_ci = slope_ci = nan2
    else:
        t_ci = (t - q * se_t, t + q * se_t)
        s_ci = (s * math.exp(-q * se_ls), s * math.exp(q * se_ls))
        slope_ci = (c / s_ci[1], c / s_ci[0])
    return PsychometricFit(t, s, c / s, t_ci, s_ci, slope_ci, {"threshold": se_t, "log_scale": se_ls},
                           shape, float(guess), float(lapse), float(ci), float(res.fun), bool(at_bound),
                           converged, not x.min() <= t <= x.max())


def _psignifit(x, y, n, shape, ci) -> PsychometricFit:
    import psignifit  # GPL-3, optional (wna[fits]): imported only here

    data = np.column_stack([x, y, n])
    res = psignifit.psignifit(data, sigmoid={"gaussian": "norm", "logistic": "logistic"}[shape],
                              experiment_type="yes/no", fixed_parameters=PSIGNIFIT_FIXED,
                              grid_steps=PSIGNIFIT_GRID, confP=(ci,), verbose=False)
    est = res.get_parameter_estimate()  # MAP
    t, width = float(est["threshold"]), float(est["width"])
    s = float(res.standard_parameter_estimate()[1])  # the Gaussian's s.d. (or the logistic's scale)
    t_ci = tuple(float(v) for v in res.confidence_intervals["threshold"][str(ci)])
    s_ci = tuple(float(v) * s / width for v in res.confidence_intervals["width"][str(ci)])
    c = float(_cdf_pdf(np.zeros(1), shape)[1][0])
    q = float(stats.norm.ppf(0.5 + ci / 2))
    se = {"threshold": (t_ci[1] - t_ci[0]) / (2 * q), "log_scale": math.log(s_ci[1] / s_ci[0]) / (2 * q)}
    p = np.clip(psychometric_function(x, t, s, shape=shape), _EPS, 1 - _EPS)
    nll = -float(np.sum(y * np.log(p) + (n - y) * np.log1p(-p)))
    return PsychometricFit(t, s, c / s, t_ci, s_ci, (c / s_ci[1], c / s_ci[0]), se, shape, 0.0, 0.0, float(ci),
                           nll, False, True, not x.min() <= t <= x.max(), "psignifit", "")


def fit_curve(levels, hits, trials, *, method: str = "psignifit", shape: str = "gaussian",
              ci: float = 0.95) -> PsychometricFit:
    """The psychometric function fitted by ``method``: "psignifit" (default) or "ml" (:func:`fit_psychometric`).

    psignifit (4.3; guess, lapse and overdispersion fixed at 0, like the
    maximum-likelihood fit; the grid of :data:`PSIGNIFIT_GRID`): ``threshold`` and ``scale`` are the MAP estimates; the intervals
    are psignifit's credible intervals at ``ci`` (percentiles of the
    marginal posteriors); ``se`` holds their half-widths over the normal
    quantile of ``ci`` (so that :meth:`wna.stimulation.PsychometricCurves.threshold_shifts`
    can add them like Wald errors). The maximum-likelihood fit is returned
    instead, with ``note`` saying why, where psignifit cannot serve: it is not
    installed, or the curve is flat (``at_bound``: no threshold in the data;
    psignifit's estimate would be its prior's).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    ml = fit_psychometric(levels, hits, trials, shape=shape, ci=ci)
    if method == "ml":
        return ml
    if ml.at_bound:
        return dataclasses.replace(ml, note="flat curve: no threshold for psignifit; maximum likelihood")
    try:
        import psignifit  # noqa: F401  (only to know whether it is there)
    except ImportError:
        return dataclasses.replace(ml, note="psignifit not installed (pip install wna[fits]); maximum likelihood")
    x, y, n = _check(levels, hits, trials, 0.0, 0.0, ci, shape)
    return _psignifit(x, y, n, shape, ci)
