"""torchvision's ResNet-18/34/50, as they are: the reference the Flax twin is checked against.

Read beside jaxpath/transfer/model.py. The model *is* torchvision.models.ResNet (its state
dict is torchvision's, key for key, so `torchvision.models.resnet18(weights=...)`'s weights
load unchanged); the subclass adds one thing, `frozen_bn`: every BatchNorm stays in eval
mode (running statistics, never updated) even under `model.train()`, the body of a linear
probe. The Flax twin passes `train=False` to those BatchNorms instead.
"""

from __future__ import annotations

import functools

import torchvision
from torch import nn

from shared_data.configs.transfer import ARCHITECTURES


class ResNet(torchvision.models.ResNet):
    """torchvision.models.ResNet whose BatchNorms can be kept in eval mode while training."""

    def __init__(self, block, layers, num_classes: int = 1000, frozen_bn: bool = False):
        super().__init__(block, list(layers), num_classes=num_classes)
        self.frozen_bn = frozen_bn

    def train(self, mode: bool = True) -> ResNet:
        """nn.Module.train, except that frozen BatchNorms stay in eval mode."""
        super().train(mode)
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self


BLOCKS = {
    "basic": torchvision.models.resnet.BasicBlock,
    "bottleneck": torchvision.models.resnet.Bottleneck,
}
# resnet18 / resnet34 / resnet50: ResNet(block, layers) awaiting num_classes and frozen_bn
MODELS = {
    name: functools.partial(ResNet, BLOCKS[block], layers)
    for name, (block, layers) in ARCHITECTURES.items()
}


def create_model(config) -> ResNet:
    """The config's ResNet with its number of classes; frozen BatchNorm for a linear probe."""
    return MODELS[config.model](config.num_classes, frozen_bn=config.train == "head")
