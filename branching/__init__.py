"""llm-branching: the list-decoder branching model of emergence in language models.

The theory side: the model (:mod:`branching.model`), offspring laws
(:mod:`branching.offspring`), exact laws (:mod:`branching.exact`), symbolic derivations
(:mod:`branching.symbolic`), Monte Carlo (:mod:`branching.simulate`), sweeps
(:mod:`branching.sweep`), finite-size analysis (:mod:`branching.scaling`) and
phase-transition detection on exact log-probabilities (:mod:`branching.transitions`).
This package never imports torch.
"""

from .model import LAWS, ListDecoderModel
from .offspring import (
    Binomial,
    FinitePmf,
    LeaveOneOut,
    NegativeBinomial,
    OffspringLaw,
    Poisson,
    PoissonBinomial,
)

__version__ = "0.1.0"

__all__ = [
    "ListDecoderModel",
    "LAWS",
    "OffspringLaw",
    "Binomial",
    "Poisson",
    "NegativeBinomial",
    "PoissonBinomial",
    "LeaveOneOut",
    "FinitePmf",
]
