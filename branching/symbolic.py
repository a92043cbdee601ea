r"""Symbolic derivations of the list decoder's threshold, moments and limit laws.

Every function here *derives* its result with sympy from the model's definition -- the
offspring pgf :math:`f(s)=(1-\varepsilon+\varepsilon s)^M`, the immigration pgf
:math:`h(s)=(1-\varepsilon+\varepsilon s)^{M-1}` and the recursion
:math:`Z_{t+1}=\sum_{i\le Z_t}\xi_{t,i}+I_t` -- rather than typing the answer in, and
returns a :class:`Derivation`: the chain of labelled intermediate results (each a
:class:`Step`), the final result, the conditions under which each step holds, and
LaTeX and numeric (lambdified) forms of every step.  The numeric forms are what the tests
use to cross-check :mod:`branching.exact`; they evaluate powers of ``1 + small`` through
``log1p``/``expm1`` so that they stay accurate for vocabularies of :math:`10^5` tokens.

===================================  =================================================================
function                             result
===================================  =================================================================
:func:`threshold`                    :math:`R_0=f'(1)=M\varepsilon`, :math:`\varepsilon_c=1/M`
:func:`mean_closed_form`             :math:`\mathbb E Z_t` in the three regimes
:func:`stationary_moments`           :math:`\mathbb E Z_\infty`, :math:`\operatorname{Var}Z_\infty`
:func:`survival_leading_term`        :math:`1-q\approx 2(m-1)/f''(1)` and its correction
:func:`finite_horizon_scaling`       :math:`\mathbb E Z_T/(\lambda T)\to(e^x-1)/x`
:func:`accuracy_bound`               :math:`1/(1+\mathbb E Z_\infty)=(1-M\varepsilon)/(1-\varepsilon)`
:func:`instant_generation_accuracy`  :math:`[(1-(1-\varepsilon)^M)/(M\varepsilon)]^T`
:func:`threshold_report`             numbers for given ``M``, ``eps`` or ``r0`` (the CLI)
===================================  =================================================================

Derivations are cached: each is computed once per process (about a second each).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Callable

import numpy as np
import sympy as sp
from scipy import special
from sympy.codegen.cfunctions import log1p
from sympy.codegen.rewriting import expm1_opt, optimize

from . import validation as check
from .model import ListDecoderModel

__all__ = [
    "SYMBOLS",
    "Step",
    "Derivation",
    "NumericForm",
    "ThresholdReport",
    "threshold",
    "mean_closed_form",
    "stationary_moments",
    "survival_leading_term",
    "finite_horizon_scaling",
    "accuracy_bound",
    "instant_generation_accuracy",
    "threshold_report",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- symbols
_M = sp.Symbol("M", integer=True, positive=True)
_eps = sp.Symbol("eps", positive=True)
_R0 = sp.Symbol("R0", positive=True)
_m = sp.Symbol("m", positive=True)
_lam = sp.Symbol("lam", positive=True)
_sigma2 = sp.Symbol("sigma2", positive=True)
_tau2 = sp.Symbol("tau2", positive=True)
_f2 = sp.Symbol("f2", positive=True)
_f3 = sp.Symbol("f3", nonnegative=True)
_x = sp.Symbol("x", real=True)
_t = sp.Symbol("t", integer=True, nonnegative=True)
_T = sp.Symbol("T", integer=True, positive=True)
_s = sp.Symbol("s")

#: The symbols of the derivations by name: ``M`` vocabulary size, ``eps`` false-eligibility
#: probability, ``R0`` offspring mean in the Poisson limit, ``m`` offspring mean, ``lam``
#: immigration mean, ``sigma2``/``tau2`` offspring/immigration variances, ``f2``/``f3`` the
#: factorial moments f''(1), f'''(1), ``x`` scaled distance to criticality, ``t``/``T``
#: time and horizon, ``s`` the pgf variable.
SYMBOLS = MappingProxyType(
    {str(sym): sym for sym in (_M, _eps, _R0, _m, _lam, _sigma2, _tau2, _f2, _f3, _x, _t, _T, _s)}
)

# Order of the arguments of every numeric form (symbols not listed follow, by name).
_ORDER = (_M, _eps, _R0, _m, _lam, _sigma2, _tau2, _f2, _f3, _x, _t, _T, _s)
_LATEX_NAMES = {
    _eps: r"\varepsilon",
    _R0: "R_0",
    _lam: r"\lambda",
    _sigma2: r"\sigma^{2}",
    _tau2: r"\tau^{2}",
    _f2: "f''(1)",
    _f3: "f'''(1)",
}


def _latex(expr) -> str:
    return sp.latex(expr, symbol_names=_LATEX_NAMES)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Step:
    r"""One labelled result inside a :class:`Derivation`.

    Parameters
    ----------
    label : str
        Short name, unique within the derivation (used by ``Derivation[label]``).
    expr : sympy.Basic
        The expression (or, for a stated recursion, a :class:`sympy.Eq`).
    lhs : str
        LaTeX of what the expression is, e.g. ``r"\varepsilon_c"``; empty for an equation.
    conditions : tuple of sympy relationals
        Where the step holds (e.g. ``m < 1``); its numeric form refuses other values.
    """

    label: str
    expr: sp.Basic
    lhs: str = ""
    conditions: tuple = ()

    @property
    def arguments(self) -> tuple[str, ...]:
        """Names of the free symbols, in the order the numeric form takes them."""
        return tuple(str(sym) for sym in _arguments(self.expr, self.conditions))

    def latex(self) -> str:
        """``lhs = expr`` in LaTeX, followed by the conditions in parentheses."""
        body = _latex(self.expr)
        text = f"{self.lhs} = {body}" if self.lhs else body
        if self.conditions:
            text += r" \quad (" + r",\ ".join(_latex(c) for c in self.conditions) + ")"
        return text


@dataclass(frozen=True)
class Derivation:
    r"""A symbolic derivation: labelled steps ending in a result.

    Parameters
    ----------
    name : str
        The function that produced it.
    steps : tuple of Step
        Every intermediate and final result, in the order derived.
    result : str
        Label of the main result among ``steps``.
    assumptions : tuple of str
        Model assumptions the derivation rests on, in words.
    parameters : tuple
        The arguments the derivation was called with (``()`` for the model's defaults).

    Notes
    -----
    ``derivation[label]`` is the sympy expression of a step, ``derivation.expr`` that of the
    result; :meth:`latex` gives LaTeX and :meth:`lambdify` a :class:`NumericForm` (NumPy,
    broadcasting, with the step's conditions checked).

    Examples
    --------
    >>> from branching.symbolic import threshold
    >>> d = threshold()
    >>> d.expr, d["R0"]
    (1/M, M*eps)
    >>> d.lambdify()(M=50257)  # doctest: +ELLIPSIS
    1.9897...e-05
    """

    name: str
    steps: tuple[Step, ...]
    result: str
    assumptions: tuple[str, ...] = ()
    parameters: tuple = ()

    def __post_init__(self):
        labels = [step.label for step in self.steps]
        if len(set(labels)) != len(labels):
            raise ValueError(f"steps must have distinct labels, got {labels}")
        if self.result not in labels:
            raise ValueError(f"result must be one of {labels}, got {self.result!r}")

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels of the steps, in order."""
        return tuple(step.label for step in self.steps)

    def step(self, label: str | None = None) -> Step:
        """The step with this label (default: the result)."""
        label = self.result if label is None else label
        for candidate in self.steps:
            if candidate.label == label:
                return candidate
        raise ValueError(f"label must be one of {list(self.labels)}, got {label!r}")

    def __getitem__(self, label: str) -> sp.Basic:
        return self.step(label).expr

    @property
    def expr(self) -> sp.Basic:
        """The sympy expression of the result."""
        return self.step().expr

    def latex(self, label: str | None = None, *, all_steps: bool = False) -> str:
        """LaTeX of one step (default: the result), or of every step in an ``aligned`` block."""
        if not all_steps:
            return self.step(label).latex()
        lines = [rf"\text{{{step.label.replace('_', ' ')}:}} && {step.latex()}" for step in self.steps]
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"

    def lambdify(self, label: str | None = None) -> "NumericForm":
        """Numeric form of one step (default: the result); see :class:`NumericForm`."""
        step = self.step(label)
        if isinstance(step.expr, sp.core.relational.Relational):
            raise ValueError(f"step {step.label!r} of {self.name} is an equation, not a value")
        return _numeric_form(f"{self.name}.{step.label}", step.expr, step.conditions)

    def to_pandas(self):
        """One row per step: label, expression, LaTeX, arguments, conditions."""
        import pandas as pd

        return pd.DataFrame(
            {
                "derivation": self.name,
                "step": step.label,
                "is_result": step.label == self.result,
                "expression": str(step.expr),
                "latex": step.latex(),
                "arguments": ", ".join(step.arguments),
                "conditions": ", ".join(str(c) for c in step.conditions),
            }
            for step in self.steps
        )

    def __repr__(self):
        params = f", parameters={self.parameters!r}" if self.parameters else ""
        return (
            f"Derivation(name={self.name!r}, result={self.result}: {self.expr}, "
            f"steps={list(self.labels)}{params})"
        )


@dataclass(frozen=True)
class NumericForm:
    """A step of a derivation as a NumPy function of its free symbols.

    Calling it with numbers or arrays (positional in :attr:`arguments` order, or by name)
    broadcasts them, checks the step's conditions, evaluates, and returns a float (scalar
    input) or an array.  A condition that fails, or a result that is not finite
    (overflow, 0/0), raises instead of returning ``inf`` or NaN.

    Attributes
    ----------
    label : str
        ``"derivation.step"``.
    arguments : tuple of str
        Argument names, in order.
    expression : str
        The evaluated expression (powers of ``1 + small`` rewritten with log1p/expm1).
    conditions : tuple of str
        The conditions checked before evaluating.
    """

    label: str
    arguments: tuple[str, ...]
    expression: str
    conditions: tuple[str, ...]
    _function: Callable = field(repr=False, compare=False)
    _checks: tuple = field(repr=False, compare=False)

    def __call__(self, *args, **kwargs):
        values = self._bind(args, kwargs)
        shape = np.broadcast_shapes(*(v.shape for v in values)) if values else ()
        with np.errstate(all="ignore"):
            for text, holds in self._checks:
                ok = np.broadcast_to(np.asarray(holds(*values), dtype=bool), shape)
                if not ok.all():
                    where = np.argwhere(~ok)[0] if ok.ndim else ()
                    got = self._point(values, shape, tuple(where))
                    raise ValueError(f"{self.label} holds only for {text}; got {got}")
            out = np.asarray(self._function(*values))
        if np.iscomplexobj(out):
            out = out.real
        out = np.broadcast_to(out, shape).astype(float) + 0.0  # + 0.0 turns -0.0 into 0.0
        if not np.all(np.isfinite(out)):
            bad = ~np.isfinite(out)
            where = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
            got = self._point(values, shape, where)
            kind = "overflows" if np.isinf(out[where]) else "is undefined (NaN)"
            raise ValueError(f"{self.label} {kind} at {got}")
        return float(out) if out.ndim == 0 else out

    def _point(self, values, shape, where) -> str:
        return ", ".join(
            f"{name}={float(np.broadcast_to(v, shape)[where])!r}" for name, v in zip(self.arguments, values)
        )

    def _bind(self, args, kwargs) -> list[np.ndarray]:
        if len(args) > len(self.arguments):
            raise TypeError(
                f"{self.label} takes {len(self.arguments)} arguments {self.arguments}, got {len(args)}"
            )
        given = dict(zip(self.arguments, args))
        for name, value in kwargs.items():
            if name not in self.arguments:
                raise TypeError(f"{self.label} got an unexpected argument {name!r}; takes {self.arguments}")
            if name in given:
                raise TypeError(f"{self.label} got argument {name!r} twice")
            given[name] = value
        missing = [name for name in self.arguments if name not in given]
        if missing:
            raise TypeError(f"{self.label} is missing arguments {missing}; takes {self.arguments}")
        return [check.array(name, given[name]) for name in self.arguments]


def _arguments(expr, conditions=()) -> tuple[sp.Symbol, ...]:
    free = set(expr.free_symbols).union(*(c.free_symbols for c in conditions))
    known = [sym for sym in _ORDER if sym in free]
    rest = sorted(free.difference(_ORDER), key=str)
    return tuple(known + rest)


_BRANCH_POINT = np.nextafter(-np.exp(-1.0), 0.0)  # the float closest to -1/e inside the domain


def _real_lambertw(z):
    """Principal branch of Lambert W on ``[-1/e, inf)`` (a rounding below -1/e is -1/e)."""
    return special.lambertw(np.maximum(z, _BRANCH_POINT)).real


_powm1 = sp.Function("powm1")  # x**y - 1, evaluated by scipy.special.powm1


def _is_symbolic_power(e) -> bool:
    return e.is_Pow and not e.exp.is_Integer


def _is_one_plus(base) -> bool:
    return base.is_Add and sp.S.One in base.args


def _power_minus_one(e):
    """``(sign, b**y)`` if ``e == sign * (b**y - 1)`` with symbolic ``y``, else ``None``."""
    if not (e.is_Add and len(e.args) == 2):
        return None
    for const, term in (e.args, e.args[::-1]):
        if const in (sp.S.One, sp.S.NegativeOne):
            power = -term if term.could_extract_minus_sign() else term
            opposite_signs = term * const == -power  # b**y - 1 or 1 - b**y, not b**y + 1
            if opposite_signs and _is_symbolic_power(power) and not _is_one_plus(power.base):
                return (1 if term == power else -1), power
    return None


def _careful(expr):
    """An equal expression that evaluates accurately in floating point.

    ``b**y - 1`` becomes ``powm1(b, y)`` (accurate for ``b`` near 1 or ``y`` near 0);
    ``(1 + a)**y`` becomes ``exp(y*log1p(a))``, and ``exp(z) - 1`` becomes ``expm1(z)``, so
    that a tiny ``a`` (a false-eligibility rate) is never rounded away against 1.
    """
    def to_powm1(e):
        sign, power = _power_minus_one(e)
        return sign * _powm1(power.base, power.exp)

    with_powm1 = expr.replace(lambda e: _power_minus_one(e) is not None, to_powm1)
    powers_of_one_plus = with_powm1.replace(
        lambda e: _is_symbolic_power(e) and _is_one_plus(e.base),
        lambda e: sp.exp(e.exp * log1p(e.base - 1)),
    )
    return optimize(powers_of_one_plus, [expm1_opt])


@lru_cache(maxsize=None)
def _numeric_form(label: str, expr, conditions: tuple) -> NumericForm:
    arguments = _arguments(expr, conditions)
    modules = [{"LambertW": _real_lambertw, "powm1": special.powm1}, "numpy"]
    careful = _careful(expr)
    function = sp.lambdify(arguments, careful, modules=modules)
    checks = tuple((str(c), sp.lambdify(arguments, c, modules=modules)) for c in conditions)
    return NumericForm(
        label=label,
        arguments=tuple(str(a) for a in arguments),
        expression=str(careful),
        conditions=tuple(str(c) for c in conditions),
        _function=function,
        _checks=checks,
    )


# --------------------------------------------------------------------------- helpers
def _offspring_pgf():
    return (1 - _eps + _eps * _s) ** _M


def _immigration_pgf():
    return (1 - _eps + _eps * _s) ** (_M - 1)


def _derivative_at_one(pgf, order: int, s=_s):
    """f^(k)(1), simplified (``1**n`` is 1 for symbolic n)."""
    return sp.simplify(sp.diff(pgf, s, order).subs(s, 1))


def _mean_and_variance(pgf, s=_s):
    """Mean f'(1) and variance f''(1) + f'(1) - f'(1)^2 of a law given by its pgf."""
    mean = _derivative_at_one(pgf, 1, s)
    variance = sp.factor(sp.simplify(_derivative_at_one(pgf, 2, s) + mean - mean**2))
    return mean, variance


@lru_cache(maxsize=None)
def _binomial_moments() -> dict:
    """m, sigma2, lam, tau2 of the list decoder, derived from its two pgfs."""
    m, sigma2 = _mean_and_variance(_offspring_pgf())
    lam, tau2 = _mean_and_variance(_immigration_pgf())
    return {_m: m, _sigma2: sigma2, _lam: lam, _tau2: tau2}


def _timed(name: str, start: float) -> None:
    logger.debug("derived %s in %.2f s", name, time.perf_counter() - start)


_GWI = (
    "Z_{t+1} = sum of Z_t i.i.d. offspring + an independent immigrant count, Z_0 = 0",
    "offspring Bin(M, eps): each of the M tokens falsely eligible independently",
    "immigration Bin(M-1, eps): the oracle prefix's M-1 wrong tokens",
)


# --------------------------------------------------------------------------- derivations
@lru_cache(maxsize=None)
def threshold(pgf=None, *, variable=None, parameter=None) -> Derivation:
    r"""Reproduction number :math:`R_0=f'(1)` and the critical parameter solving :math:`R_0=1`.

    Parameters
    ----------
    pgf : sympy expression, optional
        Offspring pgf :math:`f(s)`; default the list decoder's :math:`(1-\varepsilon+\varepsilon s)^M`.
    variable : sympy.Symbol, optional
        The pgf's variable (default ``SYMBOLS["s"]``).
    parameter : sympy.Symbol, optional
        The parameter to solve :math:`R_0=1` for; default ``eps`` for the default pgf,
        else the pgf's only other free symbol.

    Returns
    -------
    Derivation
        Steps ``pgf``, ``R0`` (:math:`f'(1)`) and ``critical`` (the result).

    Notes
    -----
    The mean offspring is :math:`f'(1)`; the process is critical when it equals 1.  For
    the binomial pgf sympy gives :math:`R_0=M\varepsilon` and :math:`\varepsilon_c=1/M`.
    Solutions are restricted by the symbols' assumptions (e.g. positivity); more than one
    admissible solution is an error.

    Examples
    --------
    >>> import sympy as sp
    >>> from branching.symbolic import threshold
    >>> mu, s = sp.symbols("mu s", positive=True)
    >>> threshold(sp.exp(mu * (s - 1)), variable=s).expr
    1
    """
    start = time.perf_counter()
    s = _s if variable is None else variable
    if not isinstance(s, sp.Symbol):
        raise ValueError(f"variable must be a sympy Symbol, got {s!r}")
    given = pgf is not None
    if not given:
        pgf, default_parameter, assumptions = _offspring_pgf(), _eps, _GWI[1:2]
    else:
        pgf = sp.sympify(pgf)
        if s not in pgf.free_symbols:
            raise ValueError(f"pgf must be an expression in the variable {s}, got {pgf}")
        if sp.simplify(pgf.subs(s, 1) - 1) != 0:
            raise ValueError(f"pgf must satisfy f(1) = 1, got f(1) = {sp.simplify(pgf.subs(s, 1))}")
        others = sorted(pgf.free_symbols - {s}, key=str)
        default_parameter = others[0] if len(others) == 1 else None
        assumptions = ("offspring law given by its pgf",)
    parameter = default_parameter if parameter is None else parameter
    if parameter is None or parameter not in pgf.free_symbols:
        raise ValueError(
            f"parameter must be one of the pgf's symbols {sorted(map(str, pgf.free_symbols - {s}))}, "
            f"got {parameter}"
        )
    r0 = sp.simplify(_derivative_at_one(pgf, 1, s))
    solutions = sp.solve(sp.Eq(r0, 1), parameter)
    if len(solutions) != 1:
        raise ValueError(f"R0 = {r0} = 1 must have one admissible solution for {parameter}, got {solutions}")
    critical = sp.simplify(solutions[0])
    steps = (
        Step("pgf", pgf, "f(s)"),
        Step("R0", r0, "R_0 = f'(1)"),
        Step("critical", critical, _latex(parameter) + "_c"),
    )
    _timed("threshold", start)
    return Derivation(
        "threshold", steps, "critical", assumptions,
        (("pgf", str(pgf)), ("parameter", str(parameter))) if given else (),
    )


@lru_cache(maxsize=None)
def mean_closed_form() -> Derivation:
    r"""Closed form of :math:`\mathbb E Z_t` from :math:`E_{t+1}=mE_t+\lambda`, :math:`E_0=0`.

    Returns
    -------
    Derivation
        Steps: ``recurrence``; ``rsolve`` (sympy's solution, :math:`m\ne1`);
        ``geometric_sum`` (:math:`\lambda\sum_{k<t}m^k` summed by sympy, an independent
        route); ``critical`` (the limit :math:`m\to1`, :math:`\lambda t`); ``mean`` (the
        result: a Piecewise over :math:`m<1`, :math:`m=1`, :math:`m>1`); ``stationary``
        (:math:`\lim_{t\to\infty}`, :math:`m<1`); ``growth_prefactor``
        (:math:`\lim_t \mathbb E Z_t/m^t=\lambda/(m-1)`, :math:`m>1`); ``binomial_mean``
        (the result with the list decoder's :math:`m=M\varepsilon`,
        :math:`\lambda=(M-1)\varepsilon` derived from its pgfs).

    Notes
    -----
    Linearity of expectation gives the recursion.  The limits in :math:`t` are taken with
    :math:`m=e^{\mp a}`, :math:`a>0`, so that sympy knows the sign of :math:`\log m`.
    """
    start = time.perf_counter()
    E = sp.Function("E")
    recurrence = sp.Eq(E(_t + 1), _m * E(_t) + _lam)
    general = sp.factor(sp.rsolve(recurrence.lhs - recurrence.rhs, E(_t), {E(0): 0}))
    k = sp.Symbol("k", integer=True, nonnegative=True)
    summed = sp.summation(_lam * _m**k, (k, 0, _t - 1))
    critical = sp.limit(general, _m, 1)
    numerator, denominator = sp.fraction(general)
    # The same expression with both signs flipped, so that m < 1 reads lam (1 - m^t)/(1 - m).
    flipped = [sp.expand(-factor) if factor.is_Add else factor for factor in sp.Mul.make_args(numerator)]
    below = sp.Mul(*flipped) / sp.expand(-denominator)
    mean = sp.Piecewise((below, _m < 1), (critical, sp.Eq(_m, 1)), (general, True))
    a = sp.Symbol("a", positive=True)
    stationary = sp.simplify(sp.limit(general.subs(_m, sp.exp(-a)), _t, sp.oo).subs(a, -sp.log(_m)))
    prefactor = sp.simplify(sp.limit((general / _m**_t).subs(_m, sp.exp(a)), _t, sp.oo).subs(a, sp.log(_m)))
    binomial = mean.subs(_binomial_moments())
    steps = (
        Step("recurrence", recurrence),
        Step("rsolve", general, r"\mathbb{E} Z_t", (sp.Ne(_m, 1),)),
        Step("geometric_sum", summed, r"\lambda \sum_{k=0}^{t-1} m^k"),
        Step("critical", critical, r"\lim_{m \to 1} \mathbb{E} Z_t"),
        Step("mean", mean, r"\mathbb{E} Z_t"),
        Step("stationary", stationary, r"\lim_{t \to \infty} \mathbb{E} Z_t", (_m < 1,)),
        Step("growth_prefactor", prefactor, r"\lim_{t \to \infty} \mathbb{E} Z_t / m^t", (_m > 1,)),
        Step("binomial_mean", binomial, r"\mathbb{E} Z_t", (_eps <= 1,)),
    )
    _timed("mean_closed_form", start)
    return Derivation("mean_closed_form", steps, "mean", ("E[Z_{t+1} | Z_t] = m Z_t + lam, Z_0 = 0",))


@lru_cache(maxsize=None)
def stationary_moments() -> Derivation:
    r"""Stationary mean and variance of a Galton-Watson process with immigration.

    Returns
    -------
    Derivation
        Steps: ``mean_recursion`` and ``variance_recursion`` (derived from the pgf
        recursion :math:`G_{t+1}(s)=G_t(f(s))\,h(s)` expanded to second order at
        :math:`s=1`); ``stationary_mean`` and ``stationary_variance`` (their fixed
        points; the latter is the result); ``binomial_stationary_mean``,
        ``binomial_stationary_variance``, ``binomial_stationary_list_size``
        (:math:`1+\mathbb E Z_\infty`) with the list decoder's moments derived from its
        pgfs; ``poisson_stationary_mean`` and ``poisson_stationary_variance``, the limits
        :math:`M\to\infty` at :math:`M\varepsilon=R_0`.

    Notes
    -----
    With :math:`f(1+u)=1+mu+\tfrac12 f''(1)u^2+\dots` (:math:`f''(1)=\sigma^2+m^2-m`),
    likewise :math:`h` with :math:`\lambda,\tau^2` and :math:`G_t` with
    :math:`\mu_t, V_t`, the coefficients of :math:`u` and :math:`u^2` in
    :math:`G_t(f(1+u))h(1+u)` give :math:`\mu_{t+1}=m\mu_t+\lambda` and
    :math:`V_{t+1}=m^2V_t+\sigma^2\mu_t+\tau^2`.  The fixed points exist for :math:`m<1`:
    :math:`V_\infty=(\lambda\sigma^2+(1-m)\tau^2)/((1-m)^2(1+m))`.
    """
    start = time.perf_counter()
    u, mu, V, mu_next, V_next = sp.symbols("u mu V mu_next V_next", real=True)
    f = 1 + _m * u + (_sigma2 + _m**2 - _m) / 2 * u**2
    h = 1 + _lam * u + (_tau2 + _lam**2 - _lam) / 2 * u**2
    factorial2 = V - mu + mu**2

    def G(v):
        return 1 + mu * v + factorial2 / 2 * v**2

    composed = sp.expand(sp.series(G(f - 1) * h, u, 0, 3).removeO())
    mean_next = composed.coeff(u, 1)
    variance_next = sp.collect(sp.expand(2 * composed.coeff(u, 2) + mean_next - mean_next**2), [V, mu])
    fixed = sp.solve([sp.Eq(mu, mean_next), sp.Eq(V, variance_next)], [mu, V], dict=True)[0]
    st_mean = sp.simplify(fixed[mu])
    st_var = sp.factor(sp.simplify(fixed[V]))
    moments = _binomial_moments()
    b_mean = sp.factor(sp.simplify(st_mean.subs(moments)))
    b_var = sp.factor(sp.simplify(st_var.subs(moments)))
    b_size = sp.factor(sp.simplify(1 + b_mean))
    to_poisson = {_eps: _R0 / _M}
    p_mean = sp.simplify(sp.limit(b_mean.subs(to_poisson), _M, sp.oo))
    p_var = sp.factor(sp.simplify(sp.limit(b_var.subs(to_poisson), _M, sp.oo)))
    below = (_m < 1,)
    b_below = (_M * _eps < 1,)
    steps = (
        Step("mean_recursion", sp.Eq(mu_next, mean_next)),
        Step("variance_recursion", sp.Eq(V_next, variance_next)),
        Step("stationary_mean", st_mean, r"\mathbb{E} Z_\infty", below),
        Step("stationary_variance", st_var, r"\operatorname{Var} Z_\infty", below),
        Step("binomial_stationary_mean", b_mean, r"\mathbb{E} Z_\infty", b_below),
        Step("binomial_stationary_variance", b_var, r"\operatorname{Var} Z_\infty", b_below),
        Step("binomial_stationary_list_size", b_size, r"\mathbb{E} L_\infty", b_below),
        Step("poisson_stationary_mean", p_mean, r"\mathbb{E} Z_\infty", (_R0 < 1,)),
        Step("poisson_stationary_variance", p_var, r"\operatorname{Var} Z_\infty", (_R0 < 1,)),
    )
    _timed("stationary_moments", start)
    return Derivation("stationary_moments", steps, "stationary_variance", _GWI)


@lru_cache(maxsize=None)
def _survival_coefficients() -> tuple:
    """Coefficients a1, a2 of 1 - q = a1 (m-1) + a2 (m-1)^2 + O((m-1)^3), general law."""
    w, a1, a2 = sp.symbols("w a1 a2")
    # Taylor expansion of f(1-w) at w = 0, with f'(1) = m = 1 + x.
    taylor = 1 - (1 + _x) * w + _f2 / 2 * w**2 - _f3 / 6 * w**3
    reduced = sp.expand(sp.cancel((taylor - (1 - w)) / w))  # fixed point q = f(q), root w != 0
    ansatz = a1 * _x + a2 * _x**2
    series = sp.expand(sp.series(reduced.subs(w, ansatz), _x, 0, 3).removeO())
    solution = sp.solve([series.coeff(_x, 1), series.coeff(_x, 2)], [a1, a2], dict=True)[0]
    return reduced, solution[a1], solution[a2]


@lru_cache(maxsize=None)
def survival_leading_term() -> Derivation:
    r"""Survival probability :math:`1-q` of one erroneous lineage just above :math:`R_0=1`.

    Returns
    -------
    Derivation
        Steps: ``fixed_point`` (:math:`(f(1-w)-(1-w))/w=0` with :math:`f` expanded to
        third order, :math:`m=1+x`); ``leading`` (the result,
        :math:`2(m-1)/f''(1)`); ``second_order`` (adds
        :math:`4f'''(1)(m-1)^2/(3f''(1)^3)`); ``binomial_leading`` and
        ``binomial_second_order`` (with :math:`f''(1), f'''(1)` of
        :math:`\mathrm{Bin}(M,\varepsilon)` derived from its pgf); ``binomial_series``
        (the same to second order in :math:`x=M\varepsilon-1` at fixed :math:`M`);
        ``poisson_pgf`` (:math:`\lim_{M\to\infty}` of the binomial pgf at
        :math:`M\varepsilon=R_0`); ``poisson_survival`` (the exact root of
        :math:`1-\rho=e^{-R_0\rho}`, via Lambert W); ``poisson_series`` (second order
        in :math:`x=R_0-1`).

    Notes
    -----
    Writing :math:`w=1-q` and :math:`m=1+x`, the nonzero root satisfies
    :math:`0=-x+\tfrac12 f''(1)w-\tfrac16 f'''(1)w^2+O(w^3)`; substituting
    :math:`w=a_1x+a_2x^2` and matching powers of :math:`x` gives :math:`a_1=2/f''(1)`,
    :math:`a_2=4f'''(1)/(3f''(1)^3)`, with the factorial moments taken at the actual law.
    The errors are :math:`O(x^2)` and :math:`O(x^3)`.  For the binomial at fixed
    :math:`M`: :math:`1-q=\frac{2M}{M-1}x-\frac{4M(2M-1)}{3(M-1)^2}x^2+O(x^3)`, whose
    :math:`M\to\infty` limit :math:`2x-\tfrac83x^2` is the Poisson series.  For
    :math:`R_0\le1` the Lambert-W form gives 0 (the principal branch returns
    :math:`W(-R_0e^{-R_0})=-R_0`), so it is valid for every :math:`R_0>0`.
    """
    start = time.perf_counter()
    reduced, a1, a2 = _survival_coefficients()
    leading = (a1 * _x).subs(_x, _m - 1)
    second = (a1 * _x + a2 * _x**2).subs(_x, _m - 1)
    pgf = _offspring_pgf()
    binomial_moments = {_f2: _derivative_at_one(pgf, 2), _f3: _derivative_at_one(pgf, 3), _m: _M * _eps}
    b_leading = sp.factor(leading.subs(binomial_moments))
    b_second = sp.simplify(second.subs(binomial_moments))
    b_series_x = sp.series(b_second.subs(_eps, (1 + _x) / _M), _x, 0, 3).removeO()
    b_series = sp.collect(sp.expand(b_series_x), _x, sp.factor)
    poisson_pgf = sp.limit(pgf.subs(_eps, _R0 / _M), _M, sp.oo)
    rho = sp.Symbol("rho", positive=True)
    roots = sp.solve(sp.Eq(1 - rho, poisson_pgf.subs(_s, 1 - rho)), rho)
    if len(roots) != 1:
        raise ArithmeticError(f"expected one positive root of the Poisson fixed point, sympy gave {roots}")
    poisson_survival = sp.simplify(roots[0])
    poisson_moments = {
        _f2: _derivative_at_one(poisson_pgf, 2).subs(_R0, 1 + _x),
        _f3: _derivative_at_one(poisson_pgf, 3).subs(_R0, 1 + _x),
    }
    p_series = sp.expand(sp.series((a1 * _x + a2 * _x**2).subs(poisson_moments), _x, 0, 3).removeO())
    at_least_one = (_m >= 1,)
    b_at_least_one = (_M * _eps >= 1, _eps <= 1)
    steps = (
        Step("fixed_point", sp.Eq(reduced, 0)),
        Step("leading", leading, "1 - q", at_least_one),
        Step("second_order", second, "1 - q", at_least_one),
        Step("binomial_leading", b_leading, "1 - q", b_at_least_one),
        Step("binomial_second_order", b_second, "1 - q", b_at_least_one),
        Step("binomial_series", b_series, r"1 - q \;(x = M\varepsilon - 1)", (_x >= 0, _M >= 2)),
        Step("poisson_pgf", poisson_pgf, "f(s)"),
        Step("poisson_survival", poisson_survival, r"\rho"),
        Step("poisson_series", p_series, r"\rho \;(x = R_0 - 1)", (_x >= 0,)),
    )
    _timed("survival_leading_term", start)
    return Derivation(
        "survival_leading_term", steps, "leading",
        ("one erroneous lineage, no immigration; q is the smallest root of q = f(q) in [0, 1]",),
    )


@lru_cache(maxsize=None)
def finite_horizon_scaling() -> Derivation:
    r"""Scaling function of the mean at the horizon: :math:`m=1+x/T`, :math:`T\to\infty`.

    Returns
    -------
    Derivation
        Steps ``finite_T`` (:math:`\mathbb E Z_T/(\lambda T)` exactly, from the closed form
        of :func:`mean_closed_form`, :math:`x\ne0`) and ``scaling`` (the result,
        :math:`\lim_{T\to\infty}`, with the value 1 at :math:`x=0` from the limit
        :math:`x\to0`).

    Notes
    -----
    :math:`\mathbb E Z_T/(\lambda T)=((1+x/T)^T-1)/x\to(e^x-1)/x`: the crossover in
    :math:`R_0` has width :math:`1/T`, and curves for different horizons collapse against
    :math:`x=T(R_0-1)`.
    """
    start = time.perf_counter()
    general = mean_closed_form()["rsolve"]
    finite = general.subs({_m: 1 + _x / _T, _t: _T}) / (_lam * _T)
    limit = sp.limit(finite, _T, sp.oo)
    at_zero = sp.limit(limit, _x, 0)
    scaling = sp.Piecewise((at_zero, sp.Eq(_x, 0)), (limit, True))
    steps = (
        Step("finite_T", finite, r"\mathbb{E} Z_T / (\lambda T)", (sp.Ne(_x, 0), _x > -_T)),
        Step("scaling", scaling, r"\lim_{T \to \infty} \mathbb{E} Z_T / (\lambda T)"),
    )
    _timed("finite_horizon_scaling", start)
    return Derivation("finite_horizon_scaling", steps, "scaling", ("R0 = 1 + x/T",))


@lru_cache(maxsize=None)
def accuracy_bound() -> Derivation:
    r"""Jensen's lower bound on the accuracy of a uniform pick from the stationary list.

    Returns
    -------
    Derivation
        Steps ``general`` (:math:`1/(1+\lambda/(1-m))`), ``binomial`` (the result, with the
        default immigration :math:`\lambda=(M-1)\varepsilon`) and ``poisson`` (the limit
        :math:`M\to\infty` at :math:`M\varepsilon=R_0`).

    Notes
    -----
    :math:`P(\text{correct})=\mathbb E[1/(1+Z)]\ge 1/(1+\mathbb E Z)` by Jensen
    (:math:`z\mapsto1/(1+z)` is convex); at stationarity
    :math:`1/(1+\mathbb E Z_\infty)=(1-M\varepsilon)/(1-\varepsilon)`.
    """
    start = time.perf_counter()
    moments = stationary_moments()
    general = sp.factor(sp.simplify(1 / (1 + moments["stationary_mean"])))
    binomial = sp.factor(sp.simplify(1 / (1 + moments["binomial_stationary_mean"])))
    poisson = sp.simplify(1 / (1 + moments["poisson_stationary_mean"]))
    steps = (
        Step("general", general, r"1 / (1 + \mathbb{E} Z_\infty)", (_m < 1,)),
        Step("binomial", binomial, r"1 / (1 + \mathbb{E} Z_\infty)", (_M * _eps < 1,)),
        Step("poisson", poisson, r"1 / (1 + \mathbb{E} Z_\infty)", (_R0 < 1,)),
    )
    _timed("accuracy_bound", start)
    return Derivation("accuracy_bound", steps, "binomial", _GWI + ("output picked uniformly from the list",))


@lru_cache(maxsize=None)
def instant_generation_accuracy() -> Derivation:
    r"""Accuracy of instant generation: one prefix, a uniform pick among its eligible tokens.

    Returns
    -------
    Derivation
        Steps ``per_step`` (:math:`\mathbb E[1/(1+K)]`, :math:`K\sim\mathrm{Bin}(M-1,\varepsilon)`,
        as :math:`\int_0^1 h(s)\,ds`); ``accuracy`` (the result, ``per_step`` to the power
        :math:`T`); ``eps_to_0`` (its limit :math:`\varepsilon\to0`, 1);
        ``small_eps`` (first order in :math:`\varepsilon`); ``at_threshold_large_M``
        (per-step probability at :math:`\varepsilon=1/M`, :math:`M\to\infty`).

    Notes
    -----
    The correct token is always eligible and :math:`K` wrong ones are; the pick is correct
    with probability :math:`1/(1+K)=\int_0^1 s^K ds`, so the per-step probability is
    :math:`\int_0^1 h(s)ds=(1-(1-\varepsilon)^M)/(M\varepsilon)<1` for every
    :math:`\varepsilon>0`: the accuracy decays geometrically in :math:`T` with no threshold.
    The formula needs :math:`\varepsilon>0`; its :math:`\varepsilon\to0` value is 1.
    """
    start = time.perf_counter()
    per_step = sp.simplify(sp.integrate(_immigration_pgf(), (_s, 0, 1)))
    accuracy = per_step**_T
    eps_to_0 = sp.limit(accuracy, _eps, 0)
    small_eps = sp.collect(sp.series(accuracy, _eps, 0, 2).removeO(), _eps, sp.factor)
    at_threshold = sp.limit(per_step.subs(_eps, 1 / _M), _M, sp.oo)
    positive = (sp.StrictGreaterThan(_eps, 0, evaluate=False), _eps <= 1)
    steps = (
        Step("per_step", per_step, r"\mathbb{E}[1/(1+K)]", positive),
        Step("accuracy", accuracy, r"P(\text{correct after } T)", positive),
        Step("eps_to_0", eps_to_0, r"\lim_{\varepsilon \to 0} P(\text{correct after } T)"),
        Step("small_eps", small_eps, r"P(\text{correct after } T)", positive),
        Step("at_threshold_large_M", at_threshold, r"\lim_{M \to \infty} \mathbb{E}[1/(1+K)]|_{\varepsilon = 1/M}"),
    )
    _timed("instant_generation_accuracy", start)
    return Derivation(
        "instant_generation_accuracy", steps, "accuracy",
        ("the oracle token is always eligible", "wrong tokens eligible independently with probability eps",
         "one token picked uniformly from the eligible set at each step"),
    )


# --------------------------------------------------------------------------- report
_CRITICAL_ATOL = 1e-12  # the tolerance ListDecoderModel.regime uses


@dataclass(frozen=True)
class ThresholdReport:
    r"""Symbolic threshold and numeric values for given ``M``, ``eps`` or ``r0``.

    Attributes
    ----------
    M, eps, r0 : int, float, float or None
        The inputs (``eps = r0/M`` or ``r0 = M eps`` filled in when both can be).
    eps_c : float or None
        Critical false-eligibility probability :math:`1/M`.
    regime : str or None
        ``"subcritical"``, ``"critical"`` or ``"supercritical"`` (``None`` if only ``M`` given).
    distance : float or None
        :math:`R_0-1`, the signed distance to the threshold.
    stationary_mean, stationary_variance, accuracy_bound : float or None
        :math:`\mathbb E Z_\infty`, :math:`\operatorname{Var} Z_\infty` and Jensen's
        :math:`1/(1+\mathbb E Z_\infty)` (subcritical only).
    survival_second_order : float or None
        :math:`1-q` of one lineage to second order in :math:`R_0-1` (supercritical, ``M`` known).
    survival_poisson : float or None
        Exact :math:`1-q` in the Poisson limit, :math:`1+W(-R_0e^{-R_0})/R_0` (supercritical).
    law : str
        ``"binomial"`` when ``M`` is known, else ``"poisson"`` (the :math:`M\to\infty` limit).
    formulas : tuple of (str, str)
        The symbolic expressions the numbers were evaluated from.
    """

    M: int | None
    eps: float | None
    r0: float | None
    eps_c: float | None
    regime: str | None
    distance: float | None
    stationary_mean: float | None
    stationary_variance: float | None
    accuracy_bound: float | None
    survival_second_order: float | None
    survival_poisson: float | None
    law: str
    formulas: tuple[tuple[str, str], ...] = field(repr=False)

    _NUMBERS = ("M", "eps", "r0", "eps_c", "regime", "distance", "stationary_mean",
                "stationary_variance", "accuracy_bound", "survival_second_order", "survival_poisson")

    def to_dict(self) -> dict:
        """The numbers and the formulas, JSON-serialisable."""
        out = {name: getattr(self, name) for name in self._NUMBERS}
        out["law"] = self.law
        out["formulas"] = dict(self.formulas)
        return out

    def to_pandas(self):
        """One row per quantity: ``quantity``, ``value``, ``formula`` (tidy)."""
        import pandas as pd

        formulas = dict(self.formulas)
        return pd.DataFrame(
            {"quantity": name, "value": getattr(self, name), "formula": formulas.get(name, "")}
            for name in self._NUMBERS
            if getattr(self, name) is not None
        )

    def __repr__(self):
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self._NUMBERS if getattr(self, name) is not None
        )
        return f"ThresholdReport({shown}, law={self.law!r})"


def threshold_report(M=None, eps=None, r0=None) -> ThresholdReport:
    r"""Threshold of the list decoder, symbolically and numerically.

    Parameters
    ----------
    M : int, optional
        Vocabulary size, ``M >= 2``.  Alone: the critical :math:`\varepsilon_c=1/M`.
    eps : float, optional
        False-eligibility probability in [0, 1]; needs ``M``.
    r0 : float, optional
        Reproduction number :math:`M\varepsilon` (in [0, M] when ``M`` is given, else
        >= 0: the Poisson limit).  At most one of ``eps`` and ``r0``.

    Returns
    -------
    ThresholdReport

    Notes
    -----
    Every number is the numeric form of a derivation in this module: :math:`\varepsilon_c`
    from :func:`threshold`, the stationary moments from :func:`stationary_moments`, the
    bound from :func:`accuracy_bound`, the survival probabilities from
    :func:`survival_leading_term`.  The regime is critical when :math:`|R_0-1|\le10^{-12}`
    (as in :attr:`ListDecoderModel.regime`).

    Examples
    --------
    >>> from branching.symbolic import threshold_report
    >>> report = threshold_report(M=100, eps=0.005)
    >>> report.regime, report.stationary_mean
    ('subcritical', 0.99)
    """
    if eps is not None and r0 is not None:
        raise ValueError(f"eps and r0 are alternatives: give at most one, got eps={eps!r} and r0={r0!r}")
    if M is None and eps is not None:
        raise ValueError(f"eps needs the vocabulary size M (an integer >= 2), got M=None and eps={eps!r}")
    if M is None and r0 is None:
        raise ValueError("give M (an integer >= 2), or r0 (a real >= 0), or both")
    if eps is not None:
        eps = check.probability("eps", eps)
    formulas = []
    values = dict.fromkeys(ThresholdReport._NUMBERS)
    if M is not None:
        M = check.integer("M", M, low=2)
        derivation = threshold()
        values["M"] = M
        values["eps_c"] = derivation.lambdify()(M)
        formulas += [("R0", str(derivation["R0"])), ("eps_c", str(derivation.expr))]
        if eps is not None or r0 is not None:
            model = ListDecoderModel(M, eps, T=0) if eps is not None else ListDecoderModel.from_r0(M, r0, T=0)
            values["eps"], values["r0"], values["regime"] = model.eps, model.r0, model.regime
    else:
        values["r0"] = check.real("r0", r0, low=0.0)
        values["regime"] = _regime(values["r0"])
    if values["r0"] is None:
        return ThresholdReport(**values, law="binomial", formulas=tuple(formulas))
    values["distance"] = values["r0"] - 1.0
    if M is not None:
        law, prefix, args = "binomial", "binomial_", (M, values["eps"])
    else:
        law, prefix, args = "poisson", "poisson_", (values["r0"],)
    moments = stationary_moments()
    if values["regime"] == "subcritical":
        bound = accuracy_bound()
        chosen = (
            ("stationary_mean", moments, f"{prefix}stationary_mean"),
            ("stationary_variance", moments, f"{prefix}stationary_variance"),
            ("accuracy_bound", bound, law),
        )
        for name, derivation, label in chosen:
            values[name] = derivation.lambdify(label)(*args)
            formulas.append((name, str(derivation[label])))
    elif values["regime"] == "supercritical":
        survival = survival_leading_term()
        if M is not None:
            values["survival_second_order"] = survival.lambdify("binomial_second_order")(*args)
            formulas.append(("survival_second_order", str(survival["binomial_second_order"])))
        values["survival_poisson"] = survival.lambdify("poisson_survival")(values["r0"])
        formulas.append(("survival_poisson", str(survival["poisson_survival"])))
    return ThresholdReport(**values, law=law, formulas=tuple(formulas))


def _regime(r0: float) -> str:
    if math.isclose(r0, 1.0, rel_tol=0.0, abs_tol=_CRITICAL_ATOL):
        return "critical"
    return "subcritical" if r0 < 1 else "supercritical"
