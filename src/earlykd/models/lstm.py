"""Stacked LSTM (LSTM3-100 by default): feature = top-layer hidden state at the last step."""
import torch
from torch import nn

from .base import Classifier, register_arch


@register_arch
class LSTMClassifier(Classifier):
    arch = "lstm"
    defaults = {"layers": 3, "hidden": 100}

    def __init__(self, in_channels, n_classes, layers, hidden):
        super().__init__(in_channels, n_classes, layers, hidden)
        self.lstm = nn.LSTM(in_channels, hidden, layers, batch_first=True)
        self.feature_dim = self.hidden_dim = hidden
        self.head = nn.Linear(hidden, n_classes)

    def encode(self, x: torch.Tensor):
        out, _ = self.lstm(x.transpose(1, 2))
        return out[:, -1], out
