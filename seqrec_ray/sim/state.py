"""Shopper state between steps and sessions, for a batch of users (one row each).

Long-lived: clock, budget left, last purchase, consumable due for repurchase, recent
purchases. Per session: intent, last click, step. ``start_sessions`` and ``after_step``
are the only writers, shared by the organic generator and the env.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec_ray.schema import SECONDS_PER_DAY
from seqrec_ray.sim.behaviour import StepOutcome
from seqrec_ray.sim.world import Catalogue, Context, SimConfig, Users

RECENT_PURCHASES = 8
STEP_GAP_S = 3.0  # from the last event of a step to the next slate
SEARCH_GAP_S = 4.0  # from a search to its results
BUDGET_MONTHS = 8.0  # monthly budget = this many typical purchases
REPURCHASE_PROB = 0.7  # a due consumable makes the session about it
COMPLEMENT_SESSION_PROB = 0.3  # a recent purchase makes the next session about its complement
CONTINUE_INTENT_PROB = 0.4  # shoppers research over several sessions: keep the last session's intent
SESSION_START_UNIFORMS = 5


@dataclass
class ShopperState:
    t: np.ndarray  # (N,) seconds, the user's clock
    budget_left: np.ndarray  # (N,)
    budget_time: np.ndarray  # (N,) when budget_left was last topped up
    last_purchase: np.ndarray  # (N,) item, -1 = none
    last_purchase_time: np.ndarray  # (N,)
    due_item: np.ndarray  # (N,) consumable to buy again, -1 = none
    due_time: np.ndarray  # (N,)
    bought: np.ndarray  # (N, RECENT_PURCHASES) ring of purchased items, -1 = empty
    bought_next: np.ndarray  # (N,) next ring slot
    intent: np.ndarray  # (N,) category of the current session
    last_click: np.ndarray  # (N,) item clicked last in this session, -1 = none
    step: np.ndarray  # (N,) step within the current session
    repurchase: np.ndarray  # (N,) bool, the session was started by a due consumable
    sessions: np.ndarray  # (N,) sessions started so far


def new_state(users: Users, t0: float) -> ShopperState:
    n = len(users)
    minus = np.full(n, -1, dtype=np.int64)
    return ShopperState(
        t=np.full(n, t0), budget_left=BUDGET_MONTHS * users.budget, budget_time=np.full(n, t0),
        last_purchase=minus.copy(), last_purchase_time=np.full(n, -np.inf), due_item=minus.copy(),
        due_time=np.full(n, np.inf), bought=np.full((n, RECENT_PURCHASES), -1, dtype=np.int64),
        bought_next=np.zeros(n, dtype=np.int64), intent=np.zeros(n, dtype=np.int64), last_click=minus.copy(),
        step=np.zeros(n, dtype=np.int64), repurchase=np.zeros(n, dtype=bool), sessions=np.zeros(n, dtype=np.int64),
    )


def context(state: ShopperState, rows: np.ndarray) -> Context:
    due = np.where(state.due_time[rows] <= state.t[rows], state.due_item[rows], -1)
    return Context(state.intent[rows], state.last_click[rows], state.last_purchase[rows],
                   state.last_purchase_time[rows], due, state.bought[rows])


def start_sessions(cfg: SimConfig, cat: Catalogue, users: Users, state: ShopperState, rows: np.ndarray,
                   t_start: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Begin a session for ``rows`` at ``t_start``; u: (len(rows), SESSION_START_UNIFORMS) uniforms.

    The intent is, in order: a due consumable's category, the complement of a recent
    purchase, the previous session's intent, or a draw from the user's category affinity.
    Returns (len(rows),) bool: the session starts with a search."""
    cap = BUDGET_MONTHS * users.budget[rows]
    topped = state.budget_left[rows] + cap * (t_start - state.budget_time[rows]) / (30 * SECONDS_PER_DAY)
    state.budget_left[rows] = np.minimum(cap, topped)
    state.budget_time[rows] = t_start
    due = (state.due_item[rows] >= 0) & (state.due_time[rows] <= t_start)
    repurchase = due & (u[:, 0] < REPURCHASE_PROB)
    last = state.last_purchase[rows]
    complement = ((last >= 0) & (t_start - state.last_purchase_time[rows] < cfg.complement_window_s)
                  & (u[:, 1] < COMPLEMENT_SESSION_PROB) & ~repurchase)
    cdf = users.affinity_cdf[rows]  # (R, C)
    sampled = np.minimum((cdf < u[:, 2:3] * cdf[:, -1:]).sum(axis=1), cdf.shape[1] - 1)
    keep = (state.sessions[rows] > 0) & (u[:, 4] < CONTINUE_INTENT_PROB)
    intent = np.where(keep, state.intent[rows], sampled)
    intent = np.where(complement, cat.complement_category[cat.category[np.maximum(last, 0)]], intent)
    state.intent[rows] = np.where(repurchase, cat.category[np.maximum(state.due_item[rows], 0)], intent)
    state.repurchase[rows] = repurchase
    state.last_click[rows] = -1
    state.step[rows] = 0
    state.sessions[rows] += 1
    searched = u[:, 3] < users.search_prob[rows]
    state.t[rows] = t_start + np.where(searched, SEARCH_GAP_S, 0.0)
    return searched


def after_step(cat: Catalogue, state: ShopperState, rows: np.ndarray, slate: np.ndarray, out: StepOutcome,
               max_steps: int) -> np.ndarray:
    """Fold one step's outcome into the state; returns (len(rows),) bool: the session ended."""
    clicked = out.click >= 0
    chosen = slate[np.arange(len(rows)), np.maximum(out.click, 0)]
    state.last_click[rows] = np.where(clicked, chosen, state.last_click[rows])
    bought_rows, item = rows[out.purchase], chosen[out.purchase]
    if len(bought_rows):
        when = out.times[out.purchase, -1]
        state.budget_left[bought_rows] -= cat.price[item]
        state.last_purchase[bought_rows] = item
        state.last_purchase_time[bought_rows] = when
        state.bought[bought_rows, state.bought_next[bought_rows]] = item
        state.bought_next[bought_rows] = (state.bought_next[bought_rows] + 1) % RECENT_PURCHASES
        cycle = cat.cycle_days[item]
        consumable = cycle > 0
        state.due_item[bought_rows[consumable]] = item[consumable]
        state.due_time[bought_rows[consumable]] = when[consumable] + cycle[consumable] * SECONDS_PER_DAY
    state.t[rows] = out.end_time + STEP_GAP_S
    state.step[rows] += 1
    return out.leave | (state.step[rows] >= max_steps)
