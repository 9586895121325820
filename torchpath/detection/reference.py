"""torchvision's Faster R-CNN (MobileNetV3-Large FPN) on the detection project's scenes.

A torch-only reference for the CenterNet pair (the registry's models exist in both trees;
this one does not): `fasterrcnn_mobilenet_v3_large_fpn(weights=None,
weights_backbone=None)` from a random init, trained on the same generated scenes under a
wall-clock budget and scored by the same evaluator (shared_data.detection.coco_map):

    python -m torchpath.detection.reference --data-dir ../shared/data --minutes 30

writes runs/detection/torchvision/<run-id>/ (config.json, metrics.jsonl, summary.json,
images/detections_epoch<N>.png) so that `roadmap report` lists it beside the two frameworks.
The recipe is torchvision's detection reference scaled to one process: SGD 0.01 (momentum
0.9, weight decay 1e-4) with a linear warm-up, images resized by the model's own transform
(torchvision's default for this model: shorter side 320; `--image-size 128` keeps the
scenes' own size, a sixth of the memory and work).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
from tqdm.auto import tqdm

from shared_data.batches import iterate_batches, num_batches
from shared_data.configs.base import override, to_dict
from shared_data.configs.detection import get_config, get_task
from shared_data.detection import coco_map, load_detection, save_detection_pictures
from shared_data.runlog import RunLogger, write_json

FRAMEWORK = "torchvision"
PICTURE_IMAGES = 6


def create_model(num_classes: int, image_size: int | None = None) -> torch.nn.Module:
    """Faster R-CNN, MobileNetV3-Large FPN body, random init, K classes + background.

    `image_size`: the side the model's transform resizes to (None: torchvision's 320).
    """
    size = {} if image_size is None else {"min_size": image_size, "max_size": image_size}
    return fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes + 1, **size
    )


def as_inputs(images: np.ndarray) -> list[torch.Tensor]:
    """NHWC images in [0, 1] as the list of CHW RGB tensors torchvision's detectors take."""
    tensors = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return list(tensors.expand(-1, 3, -1, -1) if tensors.shape[1] == 1 else tensors)


def as_targets(batch) -> list[dict[str, torch.Tensor]]:
    """The batch's boxes as torchvision's targets (labels from 1; 0 is the background)."""
    targets = []
    for boxes, labels in zip(batch["boxes"], batch["labels"], strict=True):
        keep = labels >= 0
        targets.append(
            {
                "boxes": torch.from_numpy(boxes[keep]),
                "labels": torch.from_numpy(labels[keep].astype(np.int64) + 1),
            }
        )
    return targets


@torch.inference_mode()
def predict(model, images: np.ndarray, max_detections: int, batch_size: int = 50) -> np.ndarray:
    """Detections (N, max_detections, 6) in the shared layout: xyxy, score, class (from 0)."""
    model.eval()
    out = np.zeros((len(images), max_detections, 6), np.float32)
    out[..., 5] = -1
    for start in range(0, len(images), batch_size):
        results = model(as_inputs(images[start : start + batch_size]))
        for i, result in enumerate(results, start):
            k = min(len(result["scores"]), max_detections)  # sorted by score already
            out[i, :k, :4] = result["boxes"][:k].numpy()
            out[i, :k, 4] = result["scores"][:k].numpy()
            out[i, :k, 5] = result["labels"][:k].numpy() - 1
    return out


def train(config, workdir: Path, minutes: float, lr: float, warmup: int, image_size=None) -> dict:
    """Train under a wall-clock budget of `minutes`, evaluating each epoch and at the end."""
    dataset = load_detection(config)
    torch.manual_seed(config.seed)
    model = create_model(dataset.num_classes, image_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    write_json(
        workdir / "config.json",
        {"framework": FRAMEWORK, **to_dict(config), "lr": lr, "image_size": image_size},
    )
    logger, task = RunLogger(workdir), get_task(config)
    steps_per_epoch = num_batches(len(dataset.train["image"]), config.batch_size, "drop")
    start, step, history, train_time = time.perf_counter(), 0, [], 0.0
    budget = minutes * 60
    for epoch in range(config.epochs):
        model.train()
        epoch_start = time.perf_counter()
        batches = iterate_batches(dataset.train, config.batch_size, seed=config.seed, epoch=epoch)
        bar = tqdm(
            batches, total=steps_per_epoch, desc=f"{FRAMEWORK} epoch {epoch + 1}", unit="batch"
        )
        for batch in bar:
            losses = model(as_inputs(batch["image"]), as_targets(batch))
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % config.log_every == 0:
                values = {k: float(v.detach()) for k, v in losses.items()}
                logger.log("train", step, epoch, loss=float(loss.detach()), **values)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if time.perf_counter() - start > budget:
                break
        bar.close()
        train_time += time.perf_counter() - epoch_start
        predictions = predict(model, dataset.test["image"], config.max_detections)
        scores = coco_map(predictions, dataset.test)
        logger.log("test", step, epoch + 1, **scores)
        history.append(
            {"epoch": epoch + 1, "step": step, **{f"test_{k}": v for k, v in scores.items()}}
        )
        save_detection_pictures(
            workdir,
            epoch + 1,
            dataset.test["image"][:PICTURE_IMAGES],
            predictions[:PICTURE_IMAGES],
            dataset.class_names,
        )
        print(f"epoch {epoch + 1} (step {step}/{steps_per_epoch * config.epochs}): {scores}")
        if time.perf_counter() - start > budget:
            break
    logger.close()
    summary = {
        "framework": FRAMEWORK,
        "task": task.describe(),
        "history": history,
        "steps": step,
        "num_params": sum(p.numel() for p in params),
        "train_s": train_time,
        "train_examples_per_s": step * config.batch_size / max(train_time, 1e-9),
        "wall_s": time.perf_counter() - start,
    }
    write_json(workdir / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: the detection config's scenes (variant, --set), budget, learning rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="default")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    parser.add_argument(
        "--image-size", type=int, default=None, help="resize side (default: torchvision's 320)"
    )
    parser.add_argument("--workdir", default="runs")
    parser.add_argument("--run-id", default=time.strftime("%Y%m%d-%H%M%S"))
    args = parser.parse_args(argv)
    config = override(get_config(args.variant), args.set)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    workdir = Path(args.workdir) / "detection" / FRAMEWORK / args.run_id
    summary = train(config, workdir, args.minutes, args.lr, args.warmup, args.image_size)
    last = summary["history"][-1]
    print(f"{workdir}: mAP@0.5 {last['test_map50']:.4f}, mAP@[.5:.95] {last['test_map']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
