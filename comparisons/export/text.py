"""Raw text in, model inputs out: the tokenizer a run saved, found through the input spec.

A model input whose `InputSpec` names a `tokenizer` file holds token ids made from text; its
`mask` field holds their padding mask, and its width (`shape[0]`) is the run's max length.
`roadmap export` copies that file beside the artifact and records it in the manifest
(`text_inputs`: file, sha256, max length, padding id, mask field); `roadmap serve` and the
fresh-process check encode text with it exactly as training did
(`shared_data.text.batching.encode_padded`). Nothing here names a project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.configs.base import ConfigError
from shared_data.errors import DataError
from shared_data.text.batching import encode_padded
from shared_data.text.tokenize import PAD, TextTokenizer, load_tokenizer

# Texts every text export is checked on in a fresh process: plain words, punctuation, no
# token at all (one [UNK]) and more tokens than any max length (cut).
CHECK_TEXTS = (
    "a gripping , funny and moving film",
    "dull , slow and far too long .",
    "",
    " ".join(["never"] * 300),
)


@dataclasses.dataclass(frozen=True)
class TextInput:
    """One token-id model input that is made from text, and how."""

    field: str  # the token-id input
    mask: str | None  # the input holding its padding mask (1 on real tokens)
    max_len: int  # tokens kept per text
    dtypes: tuple[str, str | None]  # of the token and mask inputs
    tokenizer: TextTokenizer
    path: Path  # the tokenizer file it was read from

    @property
    def pad_id(self) -> int:
        """The id padding positions hold ([PAD])."""
        return self.tokenizer.tokenizer.token_to_id(PAD)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """{field: ids [N, max_len], mask: [N, max_len]} of `texts`, as training encoded them."""
        tokens, mask = encode_padded(self.tokenizer, list(texts), self.max_len)
        batch = {self.field: tokens.astype(self.dtypes[0])}
        if self.mask is not None:
            batch[self.mask] = mask.astype(self.dtypes[1])
        return batch

    def record(self) -> dict[str, Any]:
        """The manifest's entry: what a loader needs to encode text the same way."""
        return {
            "field": self.field,
            "mask": self.mask,
            "max_len": self.max_len,
            "pad_id": self.pad_id,
            "vocab_size": self.tokenizer.vocab_size,
            "kind": self.tokenizer.kind,
            "tokenizer": {"file": self.path.name, "sha256": sha256_of(self.path)},
        }


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def text_specs(specs: Mapping[str, Any]) -> dict[str, Any]:
    """The model inputs (name -> InputSpec) made from text: those naming a tokenizer file."""
    return {name: spec for name, spec in specs.items() if getattr(spec, "tokenizer", None)}


def load_text_inputs(specs: Mapping[str, Any], folder: str | Path) -> dict[str, TextInput]:
    """The text inputs of `specs`, their tokenizers read from `folder` (a run or an export)."""
    found = {}
    for name, spec in text_specs(specs).items():
        if spec.mask is not None and spec.mask not in specs:
            raise ConfigError(f"input {name!r} names mask field {spec.mask!r}, not a model input")
        path = Path(folder) / spec.tokenizer
        try:
            tokenizer = load_tokenizer(path)
        except DataError as err:
            raise ConfigError(f"input {name!r} is made from text, but {err}") from None
        mask_dtype = specs[spec.mask].dtype if spec.mask is not None else None
        found[name] = TextInput(
            name, spec.mask, spec.shape[0], (spec.dtype, mask_dtype), tokenizer, path
        )
    return found


def copy_tokenizers(inputs: Mapping[str, TextInput], folder: Path) -> dict[str, TextInput]:
    """Copy each input's tokenizer file into `folder` (an export); the inputs reading the copies."""
    copied = {}
    for name, text in inputs.items():
        target = Path(folder) / text.path.name
        shutil.copyfile(text.path, target)
        copied[name] = dataclasses.replace(text, path=target)
    return copied


def from_manifest(manifest: Mapping[str, Any], folder: str | Path) -> dict[str, TextInput]:
    """The text inputs an export's manifest records, each tokenizer checked by its sha256."""
    dtypes = {i["name"]: i["dtype"] for i in manifest["inputs"]}
    found = {}
    for entry in manifest.get("text_inputs", []):
        path = Path(folder) / entry["tokenizer"]["file"]
        if not path.is_file() or sha256_of(path) != entry["tokenizer"]["sha256"]:
            raise ConfigError(f"{path}: missing, or its sha256 differs from the manifest's")
        mask = entry["mask"]
        found[entry["field"]] = TextInput(
            entry["field"],
            mask,
            int(entry["max_len"]),
            (dtypes[entry["field"]], dtypes.get(mask)),
            load_tokenizer(path),
            path,
        )
    return found


def encode_request(inputs: Mapping[str, TextInput], text: Any) -> dict[str, np.ndarray]:
    """The model inputs of `text`: a string or a list of strings when the model reads one
    text, else {input name: string or list}. Raises ValueError saying what was expected."""
    if not inputs:
        raise ValueError("this model reads no text; send its inputs as arrays")
    if not isinstance(text, dict):
        if len(inputs) != 1:
            raise ValueError(f"this model reads several texts: send {{name: text}}, {list(inputs)}")
        text = {next(iter(inputs)): text}
    if sorted(text) != sorted(inputs):
        raise ValueError(f"texts must be given for exactly {sorted(inputs)}, got {sorted(text)}")
    batch: dict[str, np.ndarray] = {}
    for name, value in text.items():
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            kind = type(value).__name__
            raise ValueError(f"{name}: a string or a non-empty list of strings, got {kind}")
        batch.update(inputs[name].encode(texts))
    return batch
