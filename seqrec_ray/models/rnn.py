"""LSTM / GRU encoders (GRU4Rec-style) over the summed input embeddings."""

from __future__ import annotations

import torch
from torch import nn

from .base import SequenceEncoder, left_pad_shift, roll_rows
from .config import EncoderConfig
from .embedding import InputEmbedding, init_weights


class RNNEncoder(SequenceEncoder):
    """Recurrent encoder; the hidden state is projected back to the item-embedding width.

    A left-padded row would feed its pads through the recurrence and leak into real
    positions, so rows are rotated to right padding first (pads then come after every
    real step, which a causal RNN never sees), run, and rotated back.
    """

    cell = nn.LSTM

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = InputEmbedding(config)
        self.rnn = self.cell(
            config.dim,
            config.hidden,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.out_dropout = nn.Dropout(config.dropout)
        self.proj = nn.Linear(config.hidden, config.dim)
        init_weights(self.embed)
        init_weights(self.proj)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = features["items"] != 0  # (B, T)
        shift = left_pad_shift(mask)  # (B,)
        x = roll_rows(self.embed(features), shift)  # (B, T, D), right-padded
        h, _ = self.rnn(x)  # (B, T, H)
        h = roll_rows(h, -shift % mask.shape[1])  # back to left padding
        h = self.proj(self.out_dropout(h))  # (B, T, D)
        return h * mask.unsqueeze(-1)


class LSTMEncoder(RNNEncoder):
    cell = nn.LSTM


class GRUEncoder(RNNEncoder):
    cell = nn.GRU
