"""Validation and numerical settings shared by the modules of :mod:`branching.exact`."""

from __future__ import annotations

from .. import validation as check
from ..model import ListDecoderModel
from ..offspring import OffspringLaw

#: Largest FFT grid times horizon that :func:`pmf` accepts (about a minute of work).
_MAX_PMF_WORK = 2**31
#: Relative error target of the accuracy quadrature before it refines its panels.
_QUAD_RTOL = 1e-10


def _require_model(model, what: str) -> ListDecoderModel:
    if not isinstance(model, ListDecoderModel):
        raise ValueError(f"model must be a ListDecoderModel, got {check._show(model)}")
    if model.K is not None:
        raise ValueError(
            f"{what} is not exactly tractable with a list cap (model.K={model.K}): the cap "
            "couples the candidates; use the Monte Carlo in branching.simulate instead"
        )
    return model


def _require_law(law) -> OffspringLaw:
    if not isinstance(law, OffspringLaw):
        raise ValueError(f"law must be an OffspringLaw, got {check._show(law)}")
    return law


def _require_stationary(model, what: str) -> ListDecoderModel:
    model = _require_model(model, what)
    if model.per_step:
        raise ValueError(
            f"{what} needs step-independent laws; the model has per-position rates (eps_steps)"
        )
    if model.delta > 0:
        raise ValueError(
            f"{what} is defined for delta = 0 only, got delta={model.delta}: with misses the "
            "oracle is lost almost surely and Z_t tends to 0; use mean_path/pmf at finite T"
        )
    r0 = model.r0
    if not r0 < 1:
        raise ValueError(
            f"the stationary law exists only for r0 < 1 (sub-critical), got r0={r0!r}"
        )
    return model
