"""A Ray Train worker's batches, from its Ray Data shards (``get_dataset_shard``)."""

from __future__ import annotations

import ray.train
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from .batches import concat_padded, iterate_batches, table_to_tensors, trim_left_padding
from .config import TrainConfig
from .outcomes import with_outcome_batches


class ArrowToTensors(ArrowBatchCollateFn):
    """Arrow batches -> int64 tensors with the shared converter (pads ``history``, drops
    ``user_id``), so workers and the in-process loop see identical batches. Training
    batches are trimmed to their longest window like the in-process loop's."""

    def __init__(self, trim: bool = False) -> None:
        super().__init__()
        self.trim = trim

    def __call__(self, batch):
        tensors = table_to_tensors(batch)
        return trim_left_padding(tensors) if self.trim else tensors


class ShardBatches:
    """This worker's train and valid batches, from its Ray Data shards.

    Streamed: every epoch iterates the shard (``iter_torch_batches``, local shuffle
    buffer). Cached: the first pass collects the shard into tensors and each epoch then
    draws a full random order of them, the same batching as the in-process loop.
    """

    def __init__(self, config: TrainConfig, cache: bool) -> None:
        self.config, self.cache = config, cache
        self._cached: dict[str, dict[str, torch.Tensor]] = {}

    def train(self, seed: int):
        """One epoch's shuffled, trimmed training batches; ``seed`` fixes the order. With the
        propensity / churn heads, each carries a batch of this worker's user-level examples
        (collected once: one row per user and cut-off, small beside the windows)."""
        outcomes = self._collect("outcomes") if self.config.outcome_heads else None
        return with_outcome_batches(self._windows(seed), outcomes, self.config.batch_size, seed)

    def _windows(self, seed: int):
        if self.cache:
            tensors = self._collect("train")
            if not tensors:
                return iter(())
            return map(trim_left_padding, iterate_batches(tensors, self.config.batch_size, shuffle=True, seed=seed))
        return ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=self.config.batch_size, collate_fn=ArrowToTensors(trim=True),
            local_shuffle_buffer_size=4 * self.config.batch_size, local_shuffle_seed=seed,
        )

    def outcomes_valid(self) -> dict[str, torch.Tensor] | None:
        """This worker's share of the heads' validation examples (None without the heads)."""
        return self._collect("outcomes_valid") if self.config.outcome_heads else None

    def valid(self):
        if self.cache:
            tensors = self._collect("valid")
            return iterate_batches(tensors, self.config.eval_batch_size) if tensors else iter(())
        return ray.train.get_dataset_shard("valid").iter_torch_batches(
            batch_size=self.config.eval_batch_size, collate_fn=ArrowToTensors()
        )

    def _collect(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._cached:
            parts = list(ray.train.get_dataset_shard(name).iter_torch_batches(
                batch_size=8192, collate_fn=ArrowToTensors()))
            tensors = concat_padded(parts)
            if tensors and name != "train":
                # Length order lets each eval batch trim more left padding (order is irrelevant).
                order = torch.argsort((tensors["items"] != 0).sum(1), stable=True)
                tensors = {k: v[order] for k, v in tensors.items()}
            self._cached[name] = tensors
        return self._cached[name]
