"""Worker processes joined in a gloo process group, for tests of distributed code.

``ProcessGroupPool(2)`` spawns two processes once (importing torch twice costs seconds) that
serve calls: ``pool.run(fn, *args)`` runs the module-level function ``fn`` on every rank at
the same time and returns the results, rank 0's first. An exception on a rank is re-raised in
the caller with that rank's traceback; a rank that does not answer within ``timeout`` seconds
(e.g. stuck in a collective another rank skipped) fails the call, and the pool is started
afresh for the next one.
"""

from __future__ import annotations

import importlib
import queue
import socket
import traceback
from datetime import timedelta

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(rank: int, world_size: int, port: int, tasks, results) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=30))
    try:
        while True:
            task = tasks.get()
            if task is None:
                break
            module, name, args = task
            try:
                fn = getattr(importlib.import_module(module), name)
                results.put((rank, True, fn(*args)))
            except BaseException:
                results.put((rank, False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class ProcessGroupPool:
    """``world_size`` gloo ranks on this machine serving :meth:`run` calls."""

    def __init__(self, world_size: int = 2, timeout: float = 60.0):
        self.world_size, self.timeout = world_size, timeout
        self._procs = []
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        port = _free_port()
        self._tasks = [ctx.Queue() for _ in range(self.world_size)]
        self._results = ctx.Queue()
        self._procs = [ctx.Process(target=_serve, daemon=True,
                                   args=(r, self.world_size, port, self._tasks[r], self._results))
                       for r in range(self.world_size)]
        for p in self._procs:
            p.start()

    def run(self, fn, *args) -> list:
        """``[fn(*args) on rank 0, on rank 1, ...]``, run on all ranks at once."""
        if not all(p.is_alive() for p in self._procs):
            self.close()
            self._start()
        for q in self._tasks:
            q.put((fn.__module__, fn.__name__, args))
        out, errors = [None] * self.world_size, []
        for _ in range(self.world_size):
            try:
                rank, ok, value = self._results.get(timeout=self.timeout)
            except queue.Empty:
                self.close()
                raise AssertionError(f"{fn.__name__}: a rank did not answer within "
                                     f"{self.timeout} s") from None
            if ok:
                out[rank] = value
            else:
                errors.append(f"rank {rank}:\n{value}")
        if errors:
            raise AssertionError(f"{fn.__name__} failed on\n" + "\n".join(errors))
        return out

    def close(self) -> None:
        for p, q in zip(self._procs, self._tasks):
            if p.is_alive():
                q.put(None)
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        self._procs = []
