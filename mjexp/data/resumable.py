"""A shuffled training loader that a checkpoint can stop and resume in the middle of an epoch.

Lightning stores ``state_dict()`` of a train loader that has one (in the fit loop's checkpoint
state) and hands it to ``load_state_dict()`` before a resumed run draws its first batch. The
order of epoch ``e`` is :class:`~torch.utils.data.DistributedSampler`'s permutation seeded by
``seed + e`` alone (not a generator's running state), so a resumed loader rebuilds the same
order and skips the batches already trained on: a killed and resumed run sees exactly the
batches of an uninterrupted one. Being a ``DistributedSampler``, it also shards the order across
DDP ranks, and Lightning leaves it in place (and calls ``set_epoch`` each epoch).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """This rank's share of epoch ``epoch``'s permutation, from position ``start`` on.

    ``len()`` stays the whole epoch's share, which is what Lightning counts batches against.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` that remembers how far into the epoch it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler):
            raise TypeError(f"ResumableLoader needs a ResumableSampler, got {type(self.sampler).__name__}")
        self.batches_done = 0  # batches handed out in the current epoch
        self._skip = 0  # batches to skip at the next epoch start (set by load_state_dict)

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing is drawn until the first batch is requested, i.e. after Lightning's
        # ``set_epoch`` for this epoch, even with worker processes.
        self.batches_done, self._skip = self._skip, 0
        self.sampler.start = self.batches_done * self.batch_size
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):  # saved after the epoch's last batch: the next epoch starts afresh
            epoch, done = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self._skip = done
