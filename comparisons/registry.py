"""The one list of projects: everything project-specific that the tools need.

Each entry names the project's dataset and inputs, and points (by naming convention) at its
config module `shared_data/configs/<name>.py`, which declares `MODELS`, `variants()`,
`get_config(variant)` and `get_task(config)` (metrics, headline, augmentation, evaluator),
and at its implementations `jaxpath/<name>/` and `torchpath/<name>/` (modules `model` and
`train`). `roadmap list|run|compare|ir|bench|report` and the registry-wide tests read only
this; none of them names a project. Unknown and duplicate names raise.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from shared_data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from shared_data.configs.base import UnknownNameError
from shared_data.tasks import Task

FRAMEWORKS = {"jax": "jaxpath", "torch": "torchpath"}
FRAMEWORK_LABELS = {"jax": "JAX (jax.jit)", "torch": "PyTorch (eager)"}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one batch field, without the batch dimension."""

    shape: tuple[int, ...]
    dtype: str
    num_classes: int | None = None  # integer fields: values in [0, num_classes)
    kind: str = "normal"  # float fields: "normal", "unit" (uniform in [0, 1)) or "binary"
    # "normal" images: the data layer's (x/255 - mean) / std, per channel (PNG uploads)
    mean: tuple[float, ...] | None = None  # None: MNIST's
    std: tuple[float, ...] | None = None
    # Token ids made from text: the run folder's tokenizer file and the field holding their
    # padding mask; export copies the file and serve then takes raw text (export/text.py).
    tokenizer: str | None = None
    mask: str | None = None

    def sample(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """A random batch of this field (the example batches of the tools and tests)."""
        shape = (batch_size, *self.shape)
        if self.num_classes is not None:
            return rng.integers(0, self.num_classes, shape).astype(self.dtype)
        if self.kind == "unit":
            return rng.random(shape).astype(self.dtype)
        if self.kind == "binary":
            return (rng.random(shape) < 0.5).astype(self.dtype)
        return rng.standard_normal(shape).astype(self.dtype)


@dataclasses.dataclass(frozen=True)
class Project:
    """One roadmap project, implemented in both frameworks."""

    name: str
    dataset: str
    description: str
    # The fields of a training batch, or a function of the config giving them (when the
    # dataset or model a config names changes the shapes, as in regression).
    inputs: dict[str, InputSpec] | Callable[[Any], dict[str, InputSpec]]
    # The batch fields `predict` reads (the rest are targets): what export and serve take.
    model_inputs: tuple[str, ...] = ("image",)
    # Config changes that make a step deterministic for the parity harness (dropout off...).
    parity_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Batch fields that stand in for a step's own sampling (the VAE's "noise"): the parity
    # harness feeds the same values to both frameworks; training draws them from named RNGs.
    # A function of the config where the shapes depend on it (like `inputs`).
    noise: dict[str, InputSpec] | Callable[[Any], dict[str, InputSpec]] = dataclasses.field(
        default_factory=dict
    )

    def config_module(self) -> ModuleType:
        """`shared_data.configs.<name>`: MODELS, variants(), get_config(), get_task()."""
        return importlib.import_module(f"shared_data.configs.{self.name}")

    def config(self, variant: str = "default") -> Any:
        """The project's shared config for `variant` (see its module docstring)."""
        return self.config_module().get_config(variant)

    @property
    def variants(self) -> tuple[str, ...]:
        """Names of the config variants ("default" and "smoke" always among them)."""
        return tuple(self.config_module().variants())

    @property
    def models(self) -> tuple[str, ...]:
        """Names of the models `config.model` may take."""
        return tuple(self.config_module().MODELS)

    def task(self, config: Any = None) -> Task:
        """Metrics, headline, augmentation and evaluator of a run under `config`."""
        return self.config_module().get_task(config if config is not None else self.config())

    @property
    def metric(self) -> str:
        """The headline metric of the default config, as runs report it (e.g. test_accuracy)."""
        return f"test_{self.task().headline}"

    def module(self, framework: str, part: str = "train") -> ModuleType:
        """`jaxpath.<name>.<part>` or `torchpath.<name>.<part>`."""
        if framework not in FRAMEWORKS:
            raise UnknownNameError(
                f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}"
            )
        return importlib.import_module(f"{FRAMEWORKS[framework]}.{self.name}.{part}")

    def input_specs(self, config: Any = None, noise: bool = False) -> dict[str, InputSpec]:
        """The batch fields under `config` (default: the default variant's), noise optional."""
        config = config if config is not None else self.config()
        specs = dict(self.inputs(config) if callable(self.inputs) else self.inputs)
        if noise:
            specs.update(self.noise(config) if callable(self.noise) else self.noise)
        return specs

    def example_batch(
        self, batch_size: int, seed: int = 0, noise: bool = False, config: Any = None
    ) -> dict[str, np.ndarray]:
        """Random numpy batch of the project's shapes (NHWC images), for tracing and benches.

        `noise=True` adds the fields that replace the step's sampling (parity tests);
        `config` picks the shapes where they depend on it.
        """
        rng = np.random.default_rng(seed)
        fields = self.input_specs(config, noise=noise)
        return {key: spec.sample(rng, batch_size) for key, spec in fields.items()}


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
        description="MLP and pytorch/examples' CNN on MNIST (SGD, Adam, Adadelta)",
        inputs={
            "image": InputSpec((28, 28, 1), "float32"),
            "label": InputSpec((), "int32", num_classes=10),
        },
        parity_overrides={"dropout": False},
    )
)


register(
    Project(
        name="vae",
        dataset="mnist",
        description="pytorch/examples' VAE (784-400-20 MLPs) on binarised MNIST; negative ELBO",
        inputs={"image": InputSpec((28, 28, 1), "float32", kind="binary")},
        # The reparameterisation's N(0, I) draw, one number per latent.
        noise=lambda config: {"noise": InputSpec((config.latents,), "float32")},
    )
)


register(
    Project(
        name="regression",
        dataset="tabular",
        description="linear, logistic and softmax regression (one Dense layer, SGD) on "
        "scikit-learn's diabetes, breast cancer and digits, checked against a NumPy oracle",
        model_inputs=("x",),
        # Features and target depend on the model and dataset the config names.
        inputs=lambda config: {
            key: InputSpec(**spec)
            for key, spec in get_project("regression").config_module().batch_fields(config).items()
        },
    )
)


register(
    Project(
        name="cifar10",
        dataset="cifar10 (python batches) or shapes (embedded)",
        # BatchNorm biases sum gradients over N*H*W values (float32 rounding ~1e-4): at 64x
        # their learning rate the step would magnify that past the harness's 1e-4. The
        # whitening bias's early stop has no OneCycleLR form (tests/test_schedules.py
        # checks it under the other schedules).
        parity_overrides={"bias_lr_scale": 1.0, "whiten_bias_epochs": 0.0},
        description="the blitz's CNN, kuangliu's ResNet-18 and an airbench94-style speedrun "
        "net on CIFAR-10 (BatchNorm, Nesterov SGD, Lookahead, TTA)",
        inputs={
            "image": InputSpec((32, 32, 3), "float32", mean=CIFAR10_MEAN, std=CIFAR10_STD),
            "label": InputSpec((), "int32", num_classes=10),
        },
    )
)


def _transfer_inputs(config) -> dict[str, InputSpec]:
    from shared_data.configs.transfer import IMAGENET_MEAN, IMAGENET_STD

    size = config.image_size
    return {
        "image": InputSpec((size, size, 3), "float32", mean=IMAGENET_MEAN, std=IMAGENET_STD),
        "label": InputSpec((), "int32", num_classes=config.num_classes),
    }


register(
    Project(
        name="transfer",
        dataset="cifar10 classes (few-shot), an image folder of your own, or shapes (embedded)",
        description="transfer learning from torchvision's ResNet-18/34/50 (and a Flax twin "
        "computing its exact function): pretrained weights ported to both, linear probe, "
        "fine-tune with discriminative learning rates, against training from scratch",
        inputs=_transfer_inputs,
        # At 32x32 torchvision's ResNets normalise layer4 over 1x1 maps (batch x 1 x 1
        # values), and from a random init their first gradients are huge: one SGD step moves
        # ResNet-50's conv1 so far that float32 rounding differs by 0.17, three Adam steps of
        # ResNet-18 by 0.02 (also at 64x64). The registry-wide step checks therefore train
        # the head on a frozen body (the linear probe); tests/test_transfer.py checks one
        # full-body step of ResNet-18 (SGD, 1e-4) and one fine-tuning step.
        parity_overrides={"train": "head"},
    )
)


register(
    Project(
        name="sentiment",
        dataset="rt-polarity (90/10 split), SST-2 (GLUE) or embedded sentences",
        description="a masked bidirectional LSTM and a small transformer encoder over words "
        "or BPE tokens (Hugging Face tokenizers, learned per run), or a pretrained BERT "
        "(all-MiniLM-L6-v2) alone or under the BiLSTM; padding never changes a logit",
        model_inputs=("tokens", "mask"),
        inputs=lambda config: {
            "tokens": InputSpec(
                (config.max_len,),
                "int32",
                num_classes=config.vocab_size,
                tokenizer="tokenizer.json",
                mask="mask",
            ),
            "mask": InputSpec((config.max_len,), "float32", kind="binary"),
            "label": InputSpec((), "int32", num_classes=2),
        },
        parity_overrides={"dropout": 0.0},
    )
)


register(
    Project(
        name="segmentation",
        dataset="generated scenes of MNIST digits (shared_data/scenes.py), embedded digits, "
        "or CIFAR-10 objects",
        description="a small U-Net (GroupNorm, optional activation checkpointing) labels every "
        "pixel of generated scenes; cross-entropy + Dice, mIoU",
        inputs=lambda config: {
            "image": InputSpec(
                (config.canvas, config.canvas, config.channels), "float32", kind="unit"
            ),
            "label": InputSpec(
                (config.canvas, config.canvas), "int32", num_classes=config.num_classes
            ),
        },
    )
)


def _detection_inputs(config) -> dict[str, InputSpec]:
    cells, objects, classes = config.cells, config.max_objects, config.num_classes
    return {
        "image": InputSpec((config.canvas, config.canvas, config.channels), "float32", kind="unit"),
        # CenterNet's targets (shared_data/detection.py); random ones keep every loss finite.
        "heatmap": InputSpec((cells, cells, classes), "float32", kind="unit"),
        "index": InputSpec((objects,), "int32", num_classes=cells * cells),
        "offset": InputSpec((objects, 2), "float32", kind="unit"),
        "size": InputSpec((objects, 2), "float32", kind="unit"),
        "valid": InputSpec((objects,), "float32", kind="binary"),
    }


register(
    Project(
        name="detection",
        dataset="generated scenes of MNIST digits (or embedded digits, CIFAR-10 objects)",
        description="a CenterNet-style detector (ResNet + FPN at stride 4; focal, GIoU and "
        "offset losses; peak decoding and class-aware NMS) scored by pycocotools' COCO mAP",
        inputs=_detection_inputs,
    )
)


def _seq2seq_inputs(config) -> dict[str, InputSpec]:
    vocab = config.vocab_size
    return {
        "source": InputSpec((config.max_source_len,), "int32", num_classes=vocab),
        "source_mask": InputSpec((config.max_source_len,), "float32", kind="binary"),
        "target": InputSpec((config.max_target_len + 1,), "int32", num_classes=vocab),
        "target_mask": InputSpec((config.max_target_len + 1,), "float32", kind="binary"),
    }


register(
    Project(
        name="seq2seq",
        dataset="Multi30k de-en (test2016) or a generated toy translation (embedded)",
        description="a GRU encoder-decoder with Bahdanau attention and a small pre-LN "
        "transformer over joint BPE tokens; teacher forcing, greedy and beam search "
        "(lax.while_loop under jit vs an eager loop), BLEU with sacrebleu",
        model_inputs=("source", "source_mask"),
        inputs=_seq2seq_inputs,
        # The registry-wide checks name their model, except the three-step schedule check:
        # it trains the GRU, since under Adam the transformer's attention key biases (whose
        # gradient is exactly zero: a softmax ignores a per-query constant) move by rounding
        # noise times lr, 2e-4 after three steps (docs/SEQ2SEQ.md, Parity).
        parity_overrides={"dropout": 0.0, "teacher_forcing": 1.0, "model": "gru"},
    )
)
