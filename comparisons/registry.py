"""The one list of projects: name, dataset, config, metric, and both implementations.

Implementations are found by naming convention: project `p` lives in `jaxpath/p/` and
`torchpath/p/` (modules `model` and `train`), and its config in `shared_data/configs/p.py`
(`get_config(variant)`). Unknown and duplicate names raise.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any

import numpy as np

from shared_data.configs.base import UnknownNameError

FRAMEWORKS = {"jax": "jaxpath", "torch": "torchpath"}
FRAMEWORK_LABELS = {"jax": "JAX (jax.jit)", "torch": "PyTorch (eager)"}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one batch field, without the batch dimension."""

    shape: tuple[int, ...]
    dtype: str
    num_classes: int | None = None  # integer fields: values in [0, num_classes)


@dataclasses.dataclass(frozen=True)
class Project:
    """One roadmap project, implemented in both frameworks."""

    name: str
    dataset: str
    metric: str
    description: str
    inputs: dict[str, InputSpec]

    def config(self, variant: str = "default") -> Any:
        """The project's shared config for `variant` (see its module docstring)."""
        return importlib.import_module(f"shared_data.configs.{self.name}").get_config(variant)

    def module(self, framework: str, part: str = "train") -> ModuleType:
        """`jaxpath.<name>.<part>` or `torchpath.<name>.<part>`."""
        if framework not in FRAMEWORKS:
            raise UnknownNameError(
                f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}"
            )
        return importlib.import_module(f"{FRAMEWORKS[framework]}.{self.name}.{part}")

    def example_batch(self, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Random numpy batch of the project's shapes (NHWC images), for tracing and benches."""
        rng = np.random.default_rng(seed)
        batch = {}
        for key, spec in self.inputs.items():
            shape = (batch_size, *spec.shape)
            if spec.num_classes is not None:
                batch[key] = rng.integers(0, spec.num_classes, shape).astype(spec.dtype)
            else:
                batch[key] = rng.standard_normal(shape).astype(spec.dtype)
        return batch


_REGISTRY: dict[str, Project] = {}


def register(project: Project) -> Project:
    """Add a project; a second project of the same name raises."""
    if project.name in _REGISTRY:
        raise ValueError(f"project {project.name!r} is registered twice")
    _REGISTRY[project.name] = project
    return project


def get_project(name: str) -> Project:
    """The project called `name`; unknown names raise with the list of known ones."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown project {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_projects() -> list[Project]:
    """Every registered project, in registration order."""
    return list(_REGISTRY.values())


register(
    Project(
        name="mnist",
        dataset="mnist",
        metric="test_accuracy",
        description="MLP and pytorch/examples' CNN on MNIST (SGD, Adam, Adadelta)",
        inputs={
            "image": InputSpec((28, 28, 1), "float32"),
            "label": InputSpec((), "int32", num_classes=10),
        },
    )
)
