"""Heads beside next-item prediction on the shared sequence state (pure torch).

The encoder's state at a position, h (..., D), is what next-item scoring ranks the
catalogue with. ``BehaviourHeads`` reads the same state for two more questions:

- the next *purchased* item, whatever events come before it: ``purchase_vector(h)``, a
  residual projection of h scored against the same item table (it starts as the
  next-item vector, zero-initialised, and learns what separates buying from browsing);
- the next event's type (view, click, cart, fav, purchase, search): ``type_logits(h)``.

Both are trained jointly with the next-item loss (models/losses.py, ``purchase_weight`` and
``type_weight``) on the positions of the same windows.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import NUM_EVENT_TYPES


class BehaviourHeads(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.purchase = nn.Linear(dim, dim)
        nn.init.zeros_(self.purchase.weight)
        nn.init.zeros_(self.purchase.bias)
        self.event_type = nn.Linear(dim, NUM_EVENT_TYPES)

    def purchase_vector(self, h: torch.Tensor) -> torch.Tensor:
        """The next-purchase query vector (..., D) for states h (..., D)."""
        return h + self.purchase(h)

    def type_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over event-type indices (..., NUM_EVENT_TYPES); index 0 (pad) is never a target."""
        return self.event_type(h)
