"""The LRN networks users deploy, built in PyTorch from their published architectures.

Weights are random (seeded, nothing is downloaded): the zoo is for compiling, checking
and timing, not for predictions. Each network is the published one at full width:

* ``alexnet``: Krizhevsky, Sutskever and Hinton (2012), one tower (the two GPU halves
  merged): conv11/4-ReLU-LRN-pool, conv5-ReLU-LRN-pool, three conv3, three dense layers.
* ``caffenet``: the BVLC reference CaffeNet, AlexNet with pooling before each LRN.
* ``zfnet``: Zeiler and Fergus (2013), conv7/2 and conv5/2 with LRN after pooling.
* ``googlenet``: Szegedy et al. (2014), GoogLeNet v1 with both LRNs of its stem and
  the nine inception modules (no auxiliary classifiers, which only training uses).

LRN follows each paper: size 5, alpha 1e-4, beta 0.75, k 2 in AlexNet; Caffe's
k 1 in CaffeNet, ZFNet and GoogLeNet (which Caffe's prototxts use; PyTorch's
``nn.LocalResponseNorm`` matches Caffe's across-channel LRN for odd sizes).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["NETWORKS", "build", "example_input", "export_onnx", "export_pt2"]

INPUT_SIZES = {"alexnet": 224, "caffenet": 227, "zfnet": 224, "googlenet": 224}


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> list:
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(inplace=True)]


def _classifier(features: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(),
        nn.Linear(features, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, classes),
    )


def alexnet(classes: int = 1000) -> nn.Sequential:
    """AlexNet (2012), one tower, input 224x224 (the paper's 227 with padding 2)."""
    return nn.Sequential(
        *_conv(3, 96, 11, 4, 2),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, 2),
        *_conv(96, 256, 5, 1, 2),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, 2),
        *_conv(256, 384, 3, 1, 1),
        *_conv(384, 384, 3, 1, 1),
        *_conv(384, 256, 3, 1, 1),
        nn.MaxPool2d(3, 2),
        _classifier(256 * 6 * 6, classes),
    )


def caffenet(classes: int = 1000) -> nn.Sequential:
    """BVLC reference CaffeNet, input 227x227: pooling before LRN, grouped conv2/4/5."""
    return nn.Sequential(
        *_conv(3, 96, 11, 4),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
        nn.Conv2d(96, 256, 5, padding=2, groups=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
        *_conv(256, 384, 3, 1, 1),
        nn.Conv2d(384, 384, 3, padding=1, groups=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        _classifier(256 * 6 * 6, classes),
    )


def zfnet(classes: int = 1000) -> nn.Sequential:
    """ZFNet (Zeiler and Fergus 2013), input 224x224, LRN after the first two pools."""
    return nn.Sequential(
        *_conv(3, 96, 7, 2, 1),
        nn.MaxPool2d(3, 2, padding=1),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
        *_conv(96, 256, 5, 2),
        nn.MaxPool2d(3, 2, padding=1),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
        *_conv(256, 384, 3, 1, 1),
        *_conv(384, 384, 3, 1, 1),
        *_conv(384, 256, 3, 1, 1),
        nn.MaxPool2d(3, 2),
        _classifier(256 * 6 * 6, classes),
    )


class Inception(nn.Module):
    """One GoogLeNet v1 inception module: 1x1, 1x1-3x3, 1x1-5x5, pool-1x1 branches."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int):  # noqa: PLR0913 (the paper's table row)
        super().__init__()
        self.b1 = nn.Sequential(*_conv(cin, c1, 1))
        self.b3 = nn.Sequential(*_conv(cin, c3r, 1), *_conv(c3r, c3, 3, 1, 1))
        self.b5 = nn.Sequential(*_conv(cin, c5r, 1), *_conv(c5r, c5, 5, 1, 2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv(cin, cp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


# (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj): Table 1 of the paper.
_INCEPTIONS = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def googlenet(classes: int = 1000) -> nn.Sequential:
    """GoogLeNet v1 (2014), input 224x224, LRN after the stem's first pool and conv3."""
    i = {name: Inception(*row) for name, row in _INCEPTIONS.items()}
    return nn.Sequential(
        *_conv(3, 64, 7, 2, 3),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
        *_conv(64, 64, 1),
        *_conv(64, 192, 3, 1, 1),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        i["3a"],
        i["3b"],
        nn.MaxPool2d(3, 2, ceil_mode=True),
        *(i[name] for name in ("4a", "4b", "4c", "4d", "4e")),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        i["5a"],
        i["5b"],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.4),
        nn.Linear(1024, classes),
    )


NETWORKS = {"alexnet": alexnet, "caffenet": caffenet, "zfnet": zfnet, "googlenet": googlenet}


def build(name: str, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """One zoo network in eval mode, with weights drawn from ``torch.manual_seed(seed)``.

    Parameters
    ----------
    name : str
        A key of :data:`NETWORKS`.
    seed : int
        Seed of PyTorch's default initializers.
    dtype : torch.dtype
        Parameter dtype.

    Returns
    -------
    torch.nn.Module
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown zoo network {name!r}; the zoo has {sorted(NETWORKS)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = NETWORKS[name]()
    return model.to(dtype).eval()


def example_input(name: str, batch: int = 1, *, seed: int = 0, scale: float = 1.0):
    """A seeded standard-normal image batch of the network's input size, times ``scale``."""
    if name not in INPUT_SIZES:
        raise ValueError(f"unknown zoo network {name!r}; the zoo has {sorted(NETWORKS)}")
    side = INPUT_SIZES[name]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, side, side, generator=generator) * scale


def export_onnx(name: str, path: str | os.PathLike, *, batch: int = 1, opset: int = 13) -> Path:
    """Write the network as ONNX with PyTorch's TorchScript exporter (``dynamo=False``).

    LRN becomes the decomposition that exporter writes (PyTorch has no ONNX LRN
    mapping); :func:`tvm_lrn.from_onnx` fuses it back into the safe op.
    """
    path = Path(path)
    model = build(name)
    torch.onnx.export(
        model,
        (example_input(name, batch),),
        str(path),
        opset_version=opset,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
    )
    return path


def export_pt2(name: str, path: str | os.PathLike, *, batch: int = 1) -> Path:
    """Write the network as a ``torch.export`` program (``.pt2``)."""
    path = Path(path)
    program = torch.export.export(build(name), (example_input(name, batch),))
    torch.export.save(program, str(path))
    return path
