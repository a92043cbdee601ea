r"""Exact laws of the list-decoder branching process.

The number :math:`Z_t` of erroneous candidates is a Galton-Watson process with immigration
(:mod:`branching.model`): step :math:`t` (``t = 0..T-1``) takes :math:`Z_t` to

.. math::  Z_{t+1} = \sum_{i=1}^{Z_t} \xi_{t,i} + A_t I_t, \qquad Z_0 = 0,

with offspring :math:`\xi_{t,i}\sim f_t`, immigrants :math:`I_t\sim h_t` (the falsely eligible
wrong tokens on the oracle prefix) and :math:`A_t` the indicator that the oracle prefix is
still in the list at the start of step :math:`t`.  Everything here is computed without
sampling: moments by linear recursions, laws by generating functions.

Generating functions
--------------------
Immigrants arriving at step :math:`k` reproduce through steps :math:`k+1..T-1`, so with
:math:`F_{k,T} = f_k\circ\cdots\circ f_{T-1}` (the identity when :math:`k = T`)

.. math::  G_T(s) = \mathbb E\, s^{Z_T} = \prod_{k=0}^{T-1} h_k\bigl(F_{k+1,T}(s)\bigr)
           \qquad(\delta = 0).

It is evaluated pointwise by one backward pass carrying the *distance* :math:`w = 1-s`
through :meth:`~branching.offspring.OffspringLaw.one_minus_pgf`, so nothing loses precision
when :math:`s` is within :math:`10^{-40}` of 1 (where the super-critical laws live).

Misses
------
With miss probability :math:`\delta` the oracle token is not eligible at a step with
probability :math:`\delta`, independently of everything else.  At the step of the miss the
oracle prefix still brings its falsely eligible wrong tokens (they are drawn independently
of the oracle token); afterwards there is no oracle prefix and no immigration.  The list then
holds only erroneous candidates, and it may become empty.  Summing over the step
:math:`\ell` of the miss (probability :math:`\delta(1-\delta)^\ell`),

.. math::  \mathbb E\, s^{Z_T} = \sum_{\ell=0}^{T-1}\delta(1-\delta)^\ell
           \prod_{k\le\ell} H_k(s) + (1-\delta)^T \prod_{k<T} H_k(s)
           = R_0(s),\qquad R_k = H_k\,(\delta + (1-\delta) R_{k+1}),\ R_T = 1,

with :math:`H_k(s) = h_k(F_{k+1,T}(s))`: the nested form is evaluated in the same backward
pass.  Accuracy counts only the oracle sequence as correct (an empty list outputs nothing),
so it is :math:`(1-\delta)^T\,\mathbb E[1/(1+Z_T)\mid\text{oracle kept}]`.

A cap ``K`` on the list size couples the candidates and is not exactly tractable: every
function here refuses a model with ``K`` set and points to :mod:`branching.simulate`.

Modules
-------
:mod:`~branching.exact.moments` (mean and variance paths, stationary moments, cost),
:mod:`~branching.exact.generating` (the pgf engine: backward passes, tail bounds, FFT
inversion), :mod:`~branching.exact.laws` (pmf, stationary law, :math:`P(Z_T=0)`, accuracy,
divergence depth), :mod:`~branching.exact.lineage` (extinction, survival, progeny),
:mod:`~branching.exact.first_passage` (time to a list size),
:mod:`~branching.exact.multitype` (several error types) and
:mod:`~branching.exact.contrasts` (decoders without a list).  Every public name is
available as ``branching.exact.<name>``.
"""

from __future__ import annotations

from .moments import (
    compute_cost,
    mean_closed_form,
    mean_path,
    oracle_survival,
    stationary_mean,
    stationary_variance,
    variance_path,
)
from .laws import (
    AccuracyEstimate,
    ZLaw,
    accuracy,
    accuracy_estimate,
    divergence_depth_law,
    log_accuracy,
    pmf,
    prob_no_error,
    prob_oracle_alone,
    stationary_pmf,
)
from .lineage import (
    extinction_probability,
    progeny_mean,
    progeny_pmf,
    progeny_variance,
    survival_probability,
)
from .first_passage import (
    FirstPassage,
    time_to_size,
    time_to_size_asymptotic,
)
from .multitype import (
    multitype_mean_path,
    multitype_r0,
    multitype_stationary_mean,
)
from .contrasts import (
    instant_generation_accuracy,
    top_k_accuracy,
    top_k_list_size,
    top_k_oracle_kept,
)

__all__ = [
    # moments
    "mean_path",
    "mean_closed_form",
    "variance_path",
    "stationary_mean",
    "stationary_variance",
    "compute_cost",
    "oracle_survival",
    # laws from generating functions
    "ZLaw",
    "pmf",
    "stationary_pmf",
    "prob_no_error",
    "prob_oracle_alone",
    "accuracy",
    "accuracy_estimate",
    "log_accuracy",
    "AccuracyEstimate",
    "divergence_depth_law",
    # one erroneous lineage
    "extinction_probability",
    "survival_probability",
    "progeny_pmf",
    "progeny_mean",
    "progeny_variance",
    # explosion time
    "FirstPassage",
    "time_to_size",
    "time_to_size_asymptotic",
    # several error types
    "multitype_r0",
    "multitype_stationary_mean",
    "multitype_mean_path",
    # decoders without a list
    "instant_generation_accuracy",
    "top_k_list_size",
    "top_k_oracle_kept",
    "top_k_accuracy",
]
