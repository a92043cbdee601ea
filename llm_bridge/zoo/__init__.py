"""A family of small Llama models trained by the package: the scale axis of emergence.

:mod:`~llm_bridge.zoo.task` defines a task with a unique answer (running sums modulo M),
:mod:`~llm_bridge.zoo.family` the model sizes and training recipe, :mod:`~llm_bridge.zoo.train`
deterministic, cached, resumable training on CPU, and :mod:`~llm_bridge.zoo.measure` the
branching parameters and accuracies of every model and checkpoint, compared with the
theory's prediction.
"""

from .family import FAMILIES, Family, ModelSize, TrainConfig, get_family
from .task import SPLITS, RunningSumTask
from .train import ZooModel, build_model, train_family, train_model

_MEASURE = ("MeasureSettings", "ScaleMeasurement", "TrainingScan", "measure_models",
            "power_law_crossing", "training_scan")


def __getattr__(name: str):
    if name in _MEASURE:  # the list decoder is imported only when a measurement is asked for
        from . import measure

        return getattr(measure, name)
    raise AttributeError(f"module 'llm_bridge.zoo' has no attribute {name!r}")

__all__ = [
    "FAMILIES",
    "MeasureSettings",
    "ScaleMeasurement",
    "TrainingScan",
    "SPLITS",
    "Family",
    "ModelSize",
    "RunningSumTask",
    "TrainConfig",
    "ZooModel",
    "build_model",
    "get_family",
    "measure_models",
    "power_law_crossing",
    "train_family",
    "train_model",
    "training_scan",
]
