"""Causal self-attention encoder (SASRec-style) with depth, width and heads as knobs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SequenceEncoder
from .config import EncoderConfig
from .embedding import InputEmbedding, init_weights


class Block(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.heads = config.num_heads
        self.norm_first = config.norm_first
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.out = nn.Linear(config.dim, config.dim)
        self.ffn = nn.Sequential(
            nn.Linear(config.dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.dim)
        )
        self.norm1 = nn.LayerNorm(config.dim)
        self.norm2 = nn.LayerNorm(config.dim)
        self.dropout = config.dropout
        self.drop = nn.Dropout(config.dropout)

    def attend(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, d)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)  # (B, H, T, d)
        return self.drop(self.out(y.transpose(1, 2).reshape(B, T, D)))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attend(self.norm1(x), allowed)
            return x + self.drop(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.attend(x, allowed))
        return self.norm2(x + self.drop(self.ffn(x)))


class TransformerEncoder(SequenceEncoder):
    """Positions count real events from the oldest one (1, 2, ...), so extra left padding
    changes nothing, and a position's index depends only on events at or before it."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = InputEmbedding(config)
        self.positions = nn.Embedding(config.max_len + 1, config.dim, padding_idx=0)
        self.in_norm = nn.LayerNorm(config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.dim) if config.norm_first else nn.Identity()
        init_weights(self)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = features["items"] != 0  # (B, T)
        T = mask.shape[1]
        pos = (mask.cumsum(dim=1) * mask).clamp(max=self.config.max_len)  # (B, T)
        x = self.embed(features) + self.positions(pos)  # (B, T, D)
        x = self.in_norm(x) * mask.unsqueeze(-1)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
        # Real keys at or before the query; every position may see itself so that pad rows
        # (whose outputs are zeroed) never have an all-masked softmax.
        eye = torch.eye(T, dtype=torch.bool, device=x.device)
        allowed = ((causal & mask.unsqueeze(1)) | eye).unsqueeze(1)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, allowed) * mask.unsqueeze(-1)
        return self.final_norm(x) * mask.unsqueeze(-1)
