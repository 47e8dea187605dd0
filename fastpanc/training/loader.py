"""Background prefetching of training batches, with the time the training loop waited for data."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


def to_tensors(batch: dict[str, np.ndarray], pin: bool) -> Batch:
    """numpy batch -> torch tensors (pinned when the training device is a GPU)."""
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    if pin:
        out = {k: v.pin_memory() for k, v in out.items()}
    return out


class PrefetchLoader:
    """Yields ``make(epoch, iteration)`` for ``iteration in range(n)``, computed ahead by worker threads.

    Batch making (memory-mapped crops, numpy copies) releases the GIL for most of its time, so threads
    overlap it with the network's compute. Order is kept, and batches do not depend on the prefetch depth.
    ``wait_s`` accumulates the time the consumer blocked on a batch that was not ready yet.
    """

    def __init__(
        self,
        make: Callable[[int, int], dict[str, np.ndarray]],
        *,
        num_workers: int = 2,
        prefetch: int = 4,
        pin_memory: bool = False,
    ) -> None:
        if num_workers < 1 or prefetch < 1:
            raise ValueError(f"num_workers and prefetch must be >= 1, got {num_workers} and {prefetch}")
        self.make = make
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self.pool = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="fastpanc-loader")
        self.wait_s = 0.0

    def _job(self, epoch: int, iteration: int) -> Batch:
        return to_tensors(self.make(epoch, iteration), self.pin_memory)

    def epoch(self, epoch: int, n: int) -> Iterator[Batch]:
        """The ``n`` batches of ``epoch`` in order."""
        pending: deque[Future[Batch]] = deque()
        nxt = 0
        try:
            for _ in range(n):
                while nxt < n and len(pending) < self.prefetch:
                    pending.append(self.pool.submit(self._job, epoch, nxt))
                    nxt += 1
                fut = pending.popleft()
                t0 = time.perf_counter()
                batch = fut.result()
                self.wait_s += time.perf_counter() - t0
                yield batch
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PrefetchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
