"""Convolutional classifiers: FCN, ResNet and InceptionTime; feature = global average pool."""
import torch
from torch import nn

from .base import Classifier, register_arch


def conv_bn(c_in: int, c_out: int, kernel: int, relu: bool = True) -> nn.Sequential:
    """'same'-length convolution (explicit padding, also for even kernels), batch norm, ReLU."""
    pad = nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0)
    layers = [pad, nn.Conv1d(c_in, c_out, kernel, bias=False), nn.BatchNorm1d(c_out)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class ConvClassifier(Classifier):
    """Shared tail: `self.body` maps (B, C, T) to (B, F, T); feature = mean over time."""

    def finish(self, width: int) -> None:
        self.feature_dim = self.hidden_dim = width
        self.head = nn.Linear(width, self.n_classes)

    def encode(self, x: torch.Tensor):
        h = self.body(x)
        return h.mean(-1), h.transpose(1, 2)


@register_arch
class FCN(ConvClassifier):
    """Fully convolutional network (Wang et al. 2017): widths h, 2h, h; kernels 8, 5, 3."""
    arch = "fcn"
    defaults = {"layers": 3, "hidden": 128}

    def __init__(self, in_channels, n_classes, layers, hidden):
        super().__init__(in_channels, n_classes, layers, hidden)
        kernels = [8, 5, 3] + [3] * max(0, layers - 3)
        widths = [hidden] + [2 * hidden] * max(0, layers - 2) + [hidden]
        widths = widths[:layers] if layers > 1 else [hidden]
        blocks, c = [], in_channels
        for w, k in zip(widths, kernels):
            blocks.append(conv_bn(c, w, k))
            c = w
        self.body = nn.Sequential(*blocks)
        self.finish(c)


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.convs = nn.Sequential(conv_bn(c_in, c_out, 8), conv_bn(c_out, c_out, 5), conv_bn(c_out, c_out, 3, relu=False))
        self.shortcut = conv_bn(c_in, c_out, 1, relu=False)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.convs(x) + self.shortcut(x))


@register_arch
class ResNet(ConvClassifier):
    """ResNet for time series (Wang et al. 2017): blocks of widths h, 2h, 2h."""
    arch = "resnet"
    defaults = {"layers": 3, "hidden": 64}

    def __init__(self, in_channels, n_classes, layers, hidden):
        super().__init__(in_channels, n_classes, layers, hidden)
        blocks, c = [], in_channels
        for i in range(layers):
            w = hidden if i == 0 else 2 * hidden
            blocks.append(ResidualBlock(c, w))
            c = w
        self.body = nn.Sequential(*blocks)
        self.finish(c)


class InceptionModule(nn.Module):
    """Bottleneck, three parallel convolutions (kernels 39, 19, 9) and a max-pool branch."""

    def __init__(self, c_in: int, filters: int, bottleneck: int = 32, kernels=(39, 19, 9)):
        super().__init__()
        use_bottleneck = c_in > 1
        self.bottleneck = nn.Conv1d(c_in, bottleneck, 1, bias=False) if use_bottleneck else nn.Identity()
        width = bottleneck if use_bottleneck else c_in
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding="same", bias=False) for k in kernels)
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(c_in, filters, 1, bias=False))
        self.bn = nn.BatchNorm1d(filters * (len(kernels) + 1))
        self.act = nn.ReLU()

    def forward(self, x):
        z = self.bottleneck(x)
        out = torch.cat([conv(z) for conv in self.convs] + [self.pool(x)], dim=1)
        return self.act(self.bn(out))


class InceptionBlock(nn.Module):
    def __init__(self, c_in: int, filters: int):
        super().__init__()
        self.module = InceptionModule(c_in, filters)
        self.shortcut = conv_bn(c_in, filters * 4, 1, relu=False)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.module(x) + self.shortcut(x))


@register_arch
class InceptionTime(ConvClassifier):
    """InceptionTime network (Fawaz et al. 2020): `layers` inception blocks of `hidden` filters,
    a residual connection on every block, as in the GDPD release (6 blocks, 32 filters)."""
    arch = "inception"
    defaults = {"layers": 6, "hidden": 32}

    def __init__(self, in_channels, n_classes, layers, hidden):
        super().__init__(in_channels, n_classes, layers, hidden)
        blocks, c = [], in_channels
        for _ in range(layers):
            blocks.append(InceptionBlock(c, hidden))
            c = hidden * 4
        self.body = nn.Sequential(*blocks)
        self.finish(c)
