"""Heads beside next-item prediction on the shared sequence state (pure torch).

The encoder's state at a position, h (..., D), is what next-item scoring ranks the
catalogue with. ``BehaviourHeads`` reads the same state for two more questions:

- the next *purchased* item, whatever events come before it: ``purchase_vector(h)``, a
  residual projection of h scored against the same item table (it starts as the
  next-item vector, zero-initialised, and learns what separates buying from browsing);
- the next event's type (view, click, cart, fav, purchase, search): ``type_logits(h)``.

Both are trained jointly with the next-item loss (models/losses.py, ``purchase_weight`` and
``type_weight``) on the positions of the same windows.

``OutcomeHeads`` answers user-level questions at a time cut-off from the state at the
user's last event before it and the user's profile counts at the cut-off
(``PROFILE_FEATURES``: recency, tenure, events, purchases and carts before it, which no
window of event embeddings carries): will the user buy within the purchase horizon
(propensity), and will the user have no event at all within the churn horizon (churn).
The counts enter twice: with the state through an MLP, and through a linear "wide" path,
so the heads can at least express the RFM logistic regression they are compared with.
Two logits, in ``OUTCOMES`` order; trained with binary cross-entropy on examples cut at
earlier cut-offs (train/outcomes.py), jointly with next-item.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import NUM_EVENT_TYPES

OUTCOMES = ("purchase", "churn")  # the user-level labels, in the order of OutcomeHeads' logits
# The user's recency / frequency / monetary counts at a cut-off, what OutcomeHeads read beside
# the state and the RFM baseline is fitted on (targets.cutoff_examples and, when serving,
# serve.features.profile_counts compute them).
PROFILE_FEATURES = ("seconds_since_last_event", "seconds_since_first_event", "events_before", "purchases_before",
                    "carts_before")
SECONDS_PER_MINUTE = 60.0


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


class OutcomeHeads(nn.Module):
    """Logits of (purchase within the horizon, no event within the horizon) per user."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        n = len(PROFILE_FEATURES)
        self.net = nn.Sequential(nn.Linear(dim + n, hidden), nn.ReLU(), nn.Linear(hidden, len(OUTCOMES)))
        self.wide = nn.Linear(n, len(OUTCOMES))

    @staticmethod
    def profile_inputs(profile: torch.Tensor) -> torch.Tensor:
        """log(1 + x) of the ``PROFILE_FEATURES`` counts (B, n), durations in minutes: a
        2-hour Taobao slice's horizons are minutes, and a year is still only log(1 + 525,600) = 13."""
        scale = torch.tensor([1.0 / SECONDS_PER_MINUTE if name.startswith("seconds_") else 1.0
                              for name in PROFILE_FEATURES], device=profile.device)
        return torch.log1p(profile.float().clamp(min=0) * scale)

    def logits(self, h: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        """(B, len(OUTCOMES)) for last states h (B, D) and the ``PROFILE_FEATURES`` counts
        at the cut-off (B, len(PROFILE_FEATURES))."""
        x = self.profile_inputs(profile).to(h.dtype)
        return self.net(torch.cat([h, x], dim=-1)) + self.wide(x)
