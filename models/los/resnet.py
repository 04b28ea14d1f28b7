"""ResNet for LoS/NLoS identification from the down-sampled ADCPM (second paper), in PyTorch.

Input (B, 1, 32, 128): the log-normalised, max-pooled angle-delay channel power matrix
(:mod:`models.los.features`); output (B,) LoS logits. The paper uses ResNet34 with the ImageNet stem
(0.58 GFLOPs at 32 × 128). On 2 CPU cores that trains too slowly for a commissioning appliance, so the
width is a parameter: ``width=64`` is the standard network, the default 32 keeps the depth (ResNet18 or
34 block counts) at a quarter of the multiply-adds. :func:`count_flops` measures what a configuration
costs (2 FLOPs per multiply-add, as the paper counts), so the figure in the benchmark is measured, not
quoted.

Only torch; imported by training and export code, never by the central unit (which runs the ONNX
export with onnxruntime, :mod:`models.los.onnx_model`).
"""

from __future__ import annotations

import torch
from torch import nn

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class LosResNet(nn.Module):
    """ResNet-{18,34} on a one-channel 32 × 128 ADCPM; ImageNet stem (7 × 7 stride 2, max-pool)."""

    def __init__(self, depth: int = 18, width: int = 32):
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"depth must be one of {sorted(BLOCKS)}, got {depth}")
        self.depth, self.width = depth, width
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, c = [], width
        for i, n in enumerate(BLOCKS[depth]):
            c_out = width * 2**i
            for j in range(n):
                layers.append(BasicBlock(c, c_out, 2 if (j == 0 and i > 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def forward(self, x):
        y = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))[:, 0]


def count_flops(model: nn.Module, input_shape=(1, 1, 32, 128)) -> float:
    """FLOPs of one forward pass (2 per multiply-add of every Conv2d and Linear), measured with hooks."""
    total = 0

    def conv_hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += 2 * out.numel() * k

    def linear_hook(mod, inp, out):
        nonlocal total
        total += 2 * out.numel() * mod.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(input_shape))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return float(total) / input_shape[0]
