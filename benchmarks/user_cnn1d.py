"""A user-style 1-D CNN for `--model benchmarks/user_cnn1d.py:build`: what a scientist might write
for spectra or sensor series (three convolution-BatchNorm-ReLU layers, global average pooling, a
linear head), to measure scinas on a network it did not design (README's "your own network")."""

from torch import nn


def build(input_shape, num_outputs):
    channels, length = input_shape
    return nn.Sequential(
        nn.Conv1d(channels, 32, 7, padding=3),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Conv1d(32, 64, 5, padding=2),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Conv1d(64, 64, 3, padding=1),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(64, num_outputs),
    )
