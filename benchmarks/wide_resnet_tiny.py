"""resnet_tiny with every width scaled, for `--model benchmarks/wide_resnet_tiny.py:x2` (or
``x1_5``): does a wider network from scratch pay at a compare's budget? The network is scinas'
own `ResNet` (one basic block per stage), its output returned as a plain tensor."""

from torch import nn

from scinas.spaces.baselines import RESNET_TINY_WIDTHS, ResNet


class _Logits(nn.Module):
    def __init__(self, net: ResNet):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]


def _wide(factor: float, input_shape, num_outputs) -> nn.Module:
    channels, *sizes = input_shape
    widths = [int(w * factor) for w in RESNET_TINY_WIDTHS]
    return _Logits(ResNet(channels, num_outputs, tuple(sizes), [1, 1, 1], widths))


def x1_5(input_shape, num_outputs):
    return _wide(1.5, input_shape, num_outputs)


def x2(input_shape, num_outputs):
    return _wide(2.0, input_shape, num_outputs)
