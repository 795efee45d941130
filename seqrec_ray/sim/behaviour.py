"""The funnel: how a batch of shoppers responds to one slate each (vectorised, numpy).

Shared by the organic generator (the slate is the shop's own listing) and the env (the
slate is the agent's). Per session and step:

1. examine: position p is looked at with probability (1 + p) ** -position_bias -> ``view``;
2. choose: at most one examined item, multinomial logit against an outside option whose
   utility grows with the step (fatigue) -> ``click``;
3. the clicked item may be favourited (``fav``) and put in the cart (``cart``); a carted
   item is bought (``purchase``) if affordable, more likely the higher its utility;
4. leave: more likely as the session goes on, after a purchase and after a dull slate.

Every step consumes the same fixed block of uniforms whatever happens
(``uniforms_per_step``), so two arms of an A/B test that share a seed see the same
random numbers in the same places (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec_ray.schema import EVENT_TYPE_INDEX
from seqrec_ray.sim.world import SimConfig

VIEW, CLICK, CART, FAV, PURCHASE, SEARCH = (EVENT_TYPE_INDEX[n] for n in ("view", "click", "cart", "fav", "purchase", "search"))
# Mean seconds spent on each event before the next one: views are glances, purchases take checkout time.
_VIEW_DWELL, _CLICK_DWELL, _FAV_DWELL, _CART_DWELL, _BUY_DWELL = 6.0, 25.0, 4.0, 10.0, 45.0


def uniforms_per_step(k: int) -> int:
    return 3 * k + 9  # exam k, gumbel k + 1, cart/fav/buy/leave 4, dwell k + 4


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class StepOutcome:
    """What each session in the batch did; event grid columns: k views, click, fav, cart, purchase."""

    click: np.ndarray  # (B,) clicked slate position, -1 = none
    purchase: np.ndarray  # (B,) bool
    leave: np.ndarray  # (B,) bool
    items: np.ndarray  # (B, k + 4) item per event slot
    types: np.ndarray  # (B, k + 4) event type index per slot
    emitted: np.ndarray  # (B, k + 4) bool
    times: np.ndarray  # (B, k + 4) seconds
    end_time: np.ndarray  # (B,) time of the last event (or the start when none)


def respond(cfg: SimConfig, u: np.ndarray, slate: np.ndarray, util: np.ndarray, valid: np.ndarray,
            affordable: np.ndarray, step: np.ndarray, t0: np.ndarray) -> StepOutcome:
    """One step of the funnel for B sessions.

    u: (B, uniforms_per_step(k)) uniforms; slate, util, valid, affordable: (B, k);
    step: (B,) step within the session; t0: (B,) time the slate is shown.
    """
    b, k = slate.shape
    exam_u, gumbel_u, act_u, dwell_u = np.split(u, [k, 2 * k + 1, 2 * k + 5], axis=1)
    exam_p = (1.0 + np.arange(k)) ** -cfg.position_bias  # (k,)
    examined = (exam_u < exam_p) & valid  # (B, k)
    gumbel = -np.log(-np.log(np.clip(gumbel_u, 1e-12, 1.0 - 1e-12)))  # (B, k + 1)
    scores = np.where(examined, util + gumbel[:, :k], -np.inf)
    best = np.argmax(scores, axis=1)
    rows = np.arange(b)
    outside = cfg.outside_utility + cfg.fatigue * step + gumbel[:, k]
    clicked = scores[rows, best] > outside
    click = np.where(clicked, best, -1)
    cu = util[rows, best]  # utility of the clicked item (meaningless where no click)
    fav = clicked & (act_u[:, 0] < sigmoid(cfg.fav_bias + 0.5 * cu))
    cart = clicked & (act_u[:, 1] < sigmoid(cfg.cart_bias + cfg.cart_weight * cu))
    purchase = cart & affordable[rows, best] & (act_u[:, 2] < sigmoid(cfg.buy_bias + cfg.buy_weight * cu))
    best_seen = np.max(np.where(examined, util, 0.0), axis=1, initial=0.0)
    leave_logit = (cfg.leave_bias + cfg.fatigue * step - 0.5 * best_seen
                   + cfg.leave_after_purchase * purchase + 0.8 * ~clicked)
    leave = act_u[:, 3] < sigmoid(leave_logit)

    chosen = slate[rows, best][:, None]
    items = np.concatenate([slate, np.repeat(chosen, 4, axis=1)], axis=1)  # (B, k + 4)
    types = np.broadcast_to(np.array([VIEW] * k + [CLICK, FAV, CART, PURCHASE], dtype=np.int8), items.shape)
    emitted = np.concatenate([examined, clicked[:, None], fav[:, None], cart[:, None], purchase[:, None]], axis=1)
    dwell_mean = np.array([_VIEW_DWELL] * k + [_CLICK_DWELL, _FAV_DWELL, _CART_DWELL, _BUY_DWELL])
    gaps = np.where(emitted, dwell_mean * (0.25 + 1.5 * dwell_u), 0.0)  # (B, k + 4)
    times = t0[:, None] + np.cumsum(gaps, axis=1) - gaps  # an event happens, then its dwell elapses
    end_time = t0 + gaps.sum(axis=1)
    return StepOutcome(click, purchase, leave, items, types, emitted, times, end_time)


def first_occurrence(slate: np.ndarray) -> np.ndarray:
    """(B, k) bool: True where the item was not already shown earlier in the same slate."""
    valid = np.ones(slate.shape, dtype=bool)
    for j in range(1, slate.shape[1]):
        valid[:, j] = ~(slate[:, :j] == slate[:, j : j + 1]).any(axis=1)
    return valid
