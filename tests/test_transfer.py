"""Transfer learning: the Flax ResNets against torchvision's, weight sources, freezing, folders.

The registry-wide tests (parity, tools, resume) cover the project as a whole; these check
what is special to it: the Flax twin computes torchvision's function for any weights, the
weights come from every kind of source (files made here, a local HTTP server standing in
for download.pytorch.org), frozen parameters and statistics do not move by a single bit,
and an image folder reads as torchvision's ImageFolder + Resize + CenterCrop would.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import socket
import threading

import jax
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from comparisons.parity import make_pair, params_diff, step_both
from comparisons.pretrained import (
    apply_pretrained,
    download_state_dict,
    read_state_dict,
    source_state_dict,
    torchvision_weights,
)
from comparisons.registry import get_project
from comparisons.weights import flax_to_torch, torch_to_flax
from jaxpath.transfer import model as jax_model
from shared_data.configs.base import ConfigError
from shared_data.errors import DataError
from shared_data.fewshot import select_classes
from shared_data.imagefolder import read_split, split_dir, write_split

PROJECT = get_project("transfer")


def realistic(model: torch.nn.Module, size: int, seed: int = 0) -> torch.nn.Module:
    """`model` with random BatchNorm affines and statistics measured on random images.

    Freshly initialised BatchNorms (mean 0, var 1) let activations double at every residual
    block; calibrated statistics keep them O(1), as in a trained network, so a 1e-4
    tolerance on the logits means what it says.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, size, size, generator=gen))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


def flax_template(name: str, num_classes: int, size: int):
    model = jax_model.MODELS[name](num_classes)
    return model, model.init(jax.random.key(0), np.zeros((1, size, size, 3), np.float32))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet_ported_to_flax_computes_the_same_function(name):
    size = 64
    reference = realistic(getattr(torchvision.models, name)(weights=None, num_classes=7), size)
    model, template = flax_template(name, 7, size)
    variables = torch_to_flax(reference, template)  # asserts every shape
    images = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(images).numpy()
    got = model.apply(variables, images.permute(0, 2, 3, 1).numpy(), train=False)
    assert np.abs(expected).max() > 0.1  # a real signal, not all zeros
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4, rtol=0)
    # ... and back: the Flax variables give torchvision's state dict, bit for bit.
    back = flax_to_torch(variables, reference)
    for key, value in reference.state_dict().items():
        assert torch.equal(back[key], value), key


def test_resnet34_has_torchvisions_shapes():
    reference = torchvision.models.resnet34(weights=None)
    _, template = flax_template("resnet34", 1000, 32)
    torch_to_flax(reference, template)  # raises PortingError on any difference


def test_project_models_are_torchvisions():
    for name in ("resnet18", "resnet34", "resnet50"):
        ours = PROJECT.module("torch", "model").MODELS[name](10)
        theirs = getattr(torchvision.models, name)(weights=None, num_classes=10)
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        shapes = [(k, v.shape) for k, v in theirs.state_dict().items()]
        assert [(k, v.shape) for k, v in ours.state_dict().items()] == shapes


# ------------------------------------------------------------------ weight sources


def smoke(**changes):
    return dataclasses.replace(PROJECT.config("smoke"), **changes)


@pytest.fixture
def pretrained_file(tmp_path):
    """A .pth of a torchvision ResNet-18 with a 1000-way head (as ImageNet's has)."""
    model = realistic(torchvision.models.resnet18(weights=None), 32, seed=3)
    path = tmp_path / "resnet18-local.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_file_weights_reach_both_frameworks_with_a_fresh_head(pretrained_file):
    path, source = pretrained_file
    config = smoke(weights=str(path))
    pair = make_pair(PROJECT, config, steps_per_epoch=1)
    state = pair.weights["torch"]
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert state["fc.weight"].shape == (3, 512)  # the seeded 3-way head, not ImageNet's
    seeded = PROJECT.module("torch").create_state(config, 1).model.state_dict()
    assert torch.equal(state["fc.weight"], seeded["fc.weight"])
    assert max(params_diff(pair).values()) == 0.0  # JAX holds the same numbers


def test_weight_errors_name_the_problem(pretrained_file, tmp_path):
    path, source = pretrained_file
    model = PROJECT.module("torch").create_state(smoke(), 1).model
    with pytest.raises(ConfigError, match=r"fc.weight has shape \(1000, 512\).*reinit=fc"):
        apply_pretrained(model, source, reinit="")
    partial = {k: v for k, v in source.items() if not k.startswith("layer4.")}
    with pytest.raises(ConfigError, match="missing.*layer4"):
        apply_pretrained(model, partial, reinit="fc")
    nested = tmp_path / "checkpoint.pt"
    torch.save({"model": source, "epoch": 3}, nested)
    assert read_state_dict(nested).keys() == source.keys()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="junk.pth is not a torch state dict"):
        read_state_dict(junk)
    with pytest.raises(ConfigError, match="not a torchvision weights name"):
        torchvision_weights("ResNet18_Weights.NOPE", "resnet18")


def test_imagenet_names_torchvisions_default_weights():
    weights = torchvision_weights("imagenet", "resnet18")
    assert weights is torchvision.models.ResNet18_Weights.DEFAULT
    assert torchvision_weights("ResNet50_Weights.IMAGENET1K_V1", None).url.endswith(".pth")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path, monkeypatch, pretrained_file):
    """A local server holding a state dict named as torchvision names its files."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    www = tmp_path / "www"
    www.mkdir()
    payload = pretrained_file[0].read_bytes()
    digest = hashlib.sha256(payload).hexdigest()[:8]
    (www / f"resnet18-{digest}.pth").write_bytes(payload)
    (www / "resnet18-deadbeef.pth").write_bytes(payload)  # a hash that does not match
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", digest, pretrained_file[1]
    server.shutdown()
    server.server_close()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_download_checks_the_hash_and_caches(hub, tmp_path):
    url, digest, source = hub
    got = download_state_dict(f"{url}/resnet18-{digest}.pth", progress=False)
    assert all(torch.equal(got[k], v) for k, v in source.items())
    assert (tmp_path / "hub" / "checkpoints" / f"resnet18-{digest}.pth").is_file()
    # Cached: a dead server does not matter any more.
    again = download_state_dict(f"{_dead_url()}/resnet18-{digest}.pth", progress=False)
    assert again.keys() == source.keys()
    with pytest.raises(DataError, match="hash"):
        download_state_dict(f"{url}/resnet18-deadbeef.pth", progress=False)
    with pytest.raises(DataError, match="Offline, copy resnet18-0123abcd.pth into"):
        download_state_dict(f"{_dead_url()}/resnet18-0123abcd.pth", progress=False)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_run_folder_is_a_weight_source(framework, tmp_path):
    config = smoke(max_steps=2, epochs=1)
    workdir = tmp_path / framework
    PROJECT.module(framework).train_and_evaluate(config, workdir, progress=False)
    trained = source_state_dict(PROJECT, smoke(weights=str(workdir)))[0]
    pair = make_pair(PROJECT, smoke(weights=str(workdir), reinit=""), steps_per_epoch=1)
    for key, value in trained.items():  # the whole network, head included (reinit empty)
        assert torch.equal(pair.weights["torch"][key], value), key
    fresh = PROJECT.module("torch").create_state(config, 1).model.state_dict()
    assert not torch.equal(trained["layer1.0.conv1.weight"], fresh["layer1.0.conv1.weight"])


# ------------------------------------------------------------------ freezing


def few_batches(config, count=3):
    dataset = PROJECT.module("torch").load_dataset(config)
    rng = np.random.default_rng(0)
    n = len(dataset.train["label"])
    for _ in range(count):
        index = rng.choice(n, config.batch_size, replace=False)
        yield {k: v[index] for k, v in dataset.train.items()}


def test_linear_probe_leaves_the_body_bit_identical_in_both_frameworks(pretrained_file):
    config = smoke(weights=str(pretrained_file[0]), train="head", lr=0.1)
    pair = make_pair(PROJECT, config, steps_per_epoch=3)
    torch_before = {k: v.clone() for k, v in pair.torch_state.model.state_dict().items()}
    variables = {"p": pair.jax_state.params, "s": pair.jax_state.batch_stats}
    jax_before = jax.tree.map(np.array, variables)
    for step, batch in enumerate(few_batches(config)):
        step_both(pair, batch, step)
    after = pair.torch_state.model.state_dict()
    for key, value in torch_before.items():
        changed = not torch.equal(after[key], value)
        assert changed == key.startswith("fc."), key  # the head trains, nothing else moves
    flat = jax.tree_util.tree_flatten_with_path(
        {"p": pair.jax_state.params, "s": pair.jax_state.batch_stats}
    )[0]
    before = dict(jax.tree_util.tree_flatten_with_path(jax_before)[0])
    for path, value in flat:
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        same = np.array_equal(np.asarray(value), before[path])
        assert same != name.startswith("p/fc/"), name
    assert max(params_diff(pair).values()) < 1e-4  # and the two heads agree


def test_fine_tuning_steps_the_body_at_its_own_learning_rate(pretrained_file):
    # One small step: this network's first gradients are large (conv1 moves 0.3 in one step
    # at lr 0.05), and a second step magnifies the first one's float32 rounding past 1e-4.
    config = smoke(weights=str(pretrained_file[0]), body_lr_scale=0.1, lr=0.01)
    pair = make_pair(PROJECT, config, steps_per_epoch=3)
    lrs = sorted(g["lr"] for g in pair.torch_state.optimizer.param_groups)
    assert lrs == pytest.approx([0.001, 0.01])
    for step, batch in enumerate(few_batches(config, 1)):
        step_both(pair, batch, step)
    diffs = params_diff(pair)
    assert max(diffs.values()) < 1e-4, max(diffs, key=diffs.get)


# ------------------------------------------------------------------ data


def test_image_folder_matches_torchvision_resize_and_center_crop(tmp_path):
    from torchvision import transforms

    rng = np.random.default_rng(0)
    sizes = {"cat": [(40, 30), (30, 50)], "dog": [(32, 32), (64, 48)]}
    for name, shapes in sizes.items():
        (tmp_path / "train" / name).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "train" / name / f"{i}.png")
        (tmp_path / "train" / name / "notes.txt").write_text("skipped, as ImageFolder does")
    images, labels, names = read_split(split_dir(tmp_path, "train"), 32)
    preset = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32)])
    reference = torchvision.datasets.ImageFolder(tmp_path / "train", transform=preset)
    assert names == reference.classes == ["cat", "dog"]
    assert labels.tolist() == [label for _, label in reference.samples]
    for i, (image, _) in enumerate(reference):
        np.testing.assert_array_equal(images[i], np.asarray(image))


def test_image_folder_bad_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        split_dir(tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="has no .*train/"):
        split_dir(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="holds no class folders"):
        read_split(tmp_path / "train", 32)
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(DataError, match="cat holds no images"):
        read_split(tmp_path / "train", 32)
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        read_split(tmp_path / "train", 32)
    with pytest.raises(DataError, match=r"has no .*val/ or .*test/"):
        split_dir(tmp_path, "eval")
    write_split(tmp_path / "val", np.zeros((1, 8, 8, 3), np.uint8), np.array([0]), ["dog"])
    with pytest.raises(DataError, match=r"missing \['cat'\], not in train \['dog'\]"):
        read_split(tmp_path / "val", 8, ["cat"])


def test_written_folder_reads_back_exactly_and_selection_is_per_class(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(6), 10)
    rng.shuffle(labels)
    kept, relabelled = select_classes(images, labels, [4, 1], per_class=3, seed=0)
    assert np.bincount(relabelled).tolist() == [3, 3]
    assert set(np.flatnonzero(np.isin(labels, [4, 1]))) >= {
        int(np.flatnonzero((images == x).all(axis=(1, 2, 3)))[0]) for x in kept
    }
    write_split(tmp_path / "train", kept, relabelled, ["four", "one"])
    back, back_labels, names = read_split(tmp_path / "train", 32)
    assert names == ["four", "one"]
    order = np.argsort(relabelled, kind="stable")  # written per class, read per class
    np.testing.assert_array_equal(back, kept[order])
    np.testing.assert_array_equal(back_labels, relabelled[order])
    with pytest.raises(DataError, match="fewer than per_class=20"):
        select_classes(images, labels, [0], per_class=20)


@pytest.mark.parametrize("shape", [(3, 2, 2, 8), (3, 1, 1, 8), (2, 3, 3, 4)])
@pytest.mark.parametrize("stride", [1, 2])
def test_small_map_convolution_is_xlas_function_and_gradient(shape, stride):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    convs = {f: jax_model.Conv(6, shape[-1], 3, stride, f) for f in ("auto", "xla")}
    variables = convs["xla"].init(jax.random.key(0), x)

    def loss(variables, x, formulation):
        return jax.numpy.sum(convs[formulation].apply(variables, x) ** 2)

    values = {f: convs[f].apply(variables, x) for f in convs}
    grads = {f: jax.grad(loss, argnums=(0, 1))(variables, x, f) for f in convs}
    np.testing.assert_allclose(values["auto"], values["xla"], rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(grads["auto"]), jax.tree.leaves(grads["xla"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_a_linear_probe_step_has_no_backward_convolution():
    """The frozen body's gradients are dead code: JAX drops them before XLA sees the step."""
    train = PROJECT.module("jax")
    counts = {}
    for what in ("all", "head"):
        config = smoke(train=what, conv="xla")  # every convolution a convolution
        state = train.create_state(config, 1)
        batch = PROJECT.example_batch(4, seed=0, config=config)
        lowered = train.train_step.lower(state, train.to_device(batch), jax.random.key(0))
        counts[what] = lowered.as_text().count("stablehlo.convolution")
    assert counts == {"all": 59, "head": 20}  # 20 forward convolutions; + dX, dW for all


def test_one_full_body_sgd_step_is_the_same_in_both_frameworks():
    """The registry-wide step checks freeze the body (registry.py says why); here it trains."""
    config = smoke(optimizer="sgd", lr=0.05, train="all")
    pair = make_pair(PROJECT, config, steps_per_epoch=1)
    step_both(pair, next(few_batches(config, 1)))
    diffs = params_diff(pair)
    assert max(diffs.values()) <= 1e-4, max(diffs, key=diffs.get)
