"""Pretrained weights for any project whose config has a `weights` field (`--weights`).

A source is one of:

- ``none``: the seeded initialisation;
- ``imagenet``: the default torchvision weights of ``config.model``
  (``torchvision.models.get_model_weights(model).DEFAULT``);
- a torchvision weights name, e.g. ``ResNet18_Weights.IMAGENET1K_V1``
  (``torchvision.models.get_weight``);
- a ``.pth`` / ``.pt`` file holding a state dict (or a checkpoint dict with one under
  ``"model"`` or ``"state_dict"``), read with ``torch.load(weights_only=True)``;
- a run folder of the same project, from either framework (its newest checkpoint; a JAX
  run is ported back to torch's layout by comparisons/weights.py);
- a name the project's config module resolves itself: its ``packaged_weights(config)``
  returns (state dict, description) for weights installed with a package (sentiment's
  all-MiniLM-L6-v2), or None.

torchvision's files come from the torch hub cache (``$TORCH_HOME/hub/checkpoints``) or are
downloaded there by ``torch.hub.load_state_dict_from_url``, which checks the SHA-256 prefix
in the file name (``check_hash=True``). Offline, put the file in that folder by hand.

The weights are copied into the torch model built from the config's seed, which is the
reference both frameworks start from, except the layers named in ``config.reinit`` (a new
head): those keep their seeded initialisation. Every other tensor must be in the source with
the model's shape. The JAX run gets the same weights ported to Flax (comparisons/parity.py's
make_pair calls `apply_pretrained`, for `roadmap run` and `compare` alike), so both
frameworks start from the same function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from shared_data.configs.base import ConfigError
from shared_data.errors import DataError

NO_WEIGHTS = "none"


def has_pretrained(config) -> bool:
    """Whether `config` names pretrained weights."""
    return getattr(config, "weights", NO_WEIGHTS) not in (None, NO_WEIGHTS)


def torchvision_weights(spec: str, model_name: str | None):
    """The torchvision WeightsEnum member for "imagenet" or a name like ResNet18_Weights.X."""
    import torchvision

    if spec == "imagenet" and model_name is None:
        raise ConfigError("--weights imagenet needs a config with a `model` field")
    try:
        if spec == "imagenet":
            return torchvision.models.get_model_weights(model_name).DEFAULT
        return torchvision.models.get_weight(spec)
    except (ValueError, KeyError, AttributeError) as err:
        raise ConfigError(f"--weights {spec}: not a torchvision weights name ({err})") from err


def download_state_dict(url: str, *, progress: bool = True) -> dict[str, torch.Tensor]:
    """A state dict from the torch hub cache, or downloaded there with its hash checked."""
    from urllib.error import URLError

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return torch.hub.load_state_dict_from_url(
            url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
        )
    except (URLError, OSError) as err:
        name = os.path.basename(url)
        raise DataError(
            f"could not fetch {url} ({err}). Offline, copy {name} into {cache}/ "
            "(or set TORCH_HOME), or pass --weights PATH to a local .pth file"
        ) from err
    except RuntimeError as err:  # torch.hub's "invalid hash value"
        raise DataError(f"{url}: {err}; delete the damaged file from {cache}/") from err


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a .pth/.pt file (bare, or under "model" / "state_dict")."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DataError(
            f"{path} is not a torch state dict readable with torch.load(weights_only=True) "
            f"({type(err).__name__}: {err})"
        ) from err
    if isinstance(payload, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(payload.get(key), Mapping):
                payload = payload[key]
                break
    if not isinstance(payload, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in payload.values()
    ):
        raise DataError(
            f"{path} holds no state dict (name -> tensor); save one with "
            "torch.save(model.state_dict(), path)"
        )
    return dict(payload)


def run_state_dict(project, path: Path) -> dict[str, torch.Tensor]:
    """The torch state dict of a finished run of `project`, from either framework."""
    from comparisons.runfolders import load_trained
    from comparisons.weights import flax_to_torch
    from shared_data.runlog import CONFIG_FILE

    stored = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    framework = stored.get("framework")
    kind = type(project.config()).__name__
    if stored.get("__class__") != kind or framework not in ("jax", "torch"):
        raise ConfigError(
            f"--weights {path}: not a run of project {project.name!r} "
            f"(its {CONFIG_FILE} is a {stored.get('__class__')} run of {framework})"
        )
    config, state, _ = load_trained(project, framework, path)
    if framework == "torch":
        return {k: v.detach().clone() for k, v in state.model.state_dict().items()}
    reference = project.module("torch").create_state(config, 1).model
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return flax_to_torch({k: v for k, v in variables.items() if v is not None}, reference)


def source_state_dict(project, config) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, where it came from) of `config.weights`."""
    spec = config.weights
    packaged = getattr(project.config_module(), "packaged_weights", None)
    found = packaged(config) if packaged is not None else None
    if found is not None:
        weights, where = found
        return {k: torch.as_tensor(v) for k, v in weights.items()}, where
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return run_state_dict(project, path), f"run {path}"
    if path.is_file():
        return read_state_dict(path), f"file {path}"
    weights = torchvision_weights(spec, getattr(config, "model", None))
    return download_state_dict(weights.url), f"torchvision {weights} ({weights.url})"


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def apply_pretrained(model: torch.nn.Module, source: Mapping[str, torch.Tensor], reinit: str):
    """Copy `source` into `model`, but for the layers under the `reinit` prefixes.

    Every other tensor of the model must be in `source` with the same shape; a source tensor
    the model lacks is an error unless it is under a reinit prefix (a 1000-class head).
    """
    prefixes = tuple(p for p in reinit.split(",") if p)
    own = model.state_dict()
    missing = [k for k in own if not _under(k, prefixes) and k not in source]
    extra = [k for k in source if k not in own and not _under(k, prefixes)]
    if missing or extra:
        raise ConfigError(
            f"--weights do not fit the model: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
            f"{'...' if len(extra) > 5 else ''} (a different architecture?)"
        )
    for key, value in own.items():
        if _under(key, prefixes):
            continue
        if tuple(source[key].shape) != tuple(value.shape):
            hint = "" if prefixes else "; a new head? --set reinit=fc"
            raise ConfigError(
                f"--weights: {key} has shape {tuple(source[key].shape)}, the model's "
                f"{tuple(value.shape)}{hint}"
            )
    kept = {k: source[k] if not _under(k, prefixes) else v for k, v in own.items()}
    model.load_state_dict(kept, strict=True)
