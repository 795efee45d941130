"""The gymnasium shopper simulator: world model, organic log generator, env, A/B tools.

``import seqrec_ray.sim`` registers the env id ``seqrec/Shopper-v0`` (a dict entry in
gymnasium's registry, no other work), so ``gymnasium.make("seqrec_ray.sim:seqrec/Shopper-v0")``
works from a fresh interpreter.
"""

from __future__ import annotations

ENV_ID = "seqrec/Shopper-v0"


def register_envs() -> None:
    """Register ``ENV_ID`` with gymnasium (idempotent)."""
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="seqrec_ray.sim.env:ShopperEnv")


register_envs()
