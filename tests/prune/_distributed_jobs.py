"""The programs the distributed tests run: tiny IMP and UGS searches, the same code on one
process (in the test) and on two gloo processes (:func:`run_two_ranks`), each rank leaving
its masks, records and the count of files it wrote under the job folder."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from sparselth.prune import IMP, IMPConfig
from sparselth.prune.masks import masks_of, state_without_masks

IMP_ROUNDS = 2
UGS_ROUNDS = 2


# --------------------------------------------------------------------------- the searches


def imp_search(run_dir: Path, rounds: int = IMP_ROUNDS, diverge: bool = False):
    """IMP of a small MLP on synthetic images through ``ClassificationTask`` (late rewinding,
    an odd last mini-batch); ``diverge``: each rank adds its own noise after training, a
    train function that does not synchronise."""
    from sparselth.data.images import make_image_dataset
    from sparselth.models.small import build_model
    from sparselth.train.classification import ClassificationTask, SGDConfig
    from sparselth.utils.distributed import world

    data = make_image_dataset("synthetic", n_train=101, n_test=64, image_size=4,
                              num_classes=3, seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", in_channels=1, image_size=4, num_classes=3, hidden=[16])
    task = ClassificationTask(data["x_train"], data["y_train"], data["x_test"], data["y_test"],
                              SGDConfig(epochs=2, batch_size=32, lr=0.1), seed=0)
    train = task
    if diverge:
        def train(m, r):
            task.train(m, r)
            with torch.no_grad():
                next(m.parameters()).add_(1e-3 * (world()[0] + 1))
    cfg = IMPConfig(rounds=rounds, fraction=0.5, rewind="late", rewind_step=2, seed=0)
    imp = task.bind(IMP(model, train, task.evaluate if diverge else None, cfg,
                        run_dir=run_dir, progress=False))
    records = imp.run()
    return records, dict(masks_of(model)), state_without_masks(model)


def ugs_search(run_dir: Path, rounds: int = UGS_ROUNDS):
    """UGS (mask search, then fix-mask training) of a small GCN on a contextual SBM."""
    from sparselth.data import contextual_sbm
    from sparselth.models import GCN
    from sparselth.prune.ugs import UGS, UGSConfig
    from sparselth.sparse import CSR
    from sparselth.train import NodeClassificationTask

    data = contextual_sbm(60, num_classes=3, avg_degree=6, num_features=12, seed=0,
                          train_per_class=5, num_val=15, num_test=20)
    adj = CSR.from_edge_index(data.edge_index.flip(0), num_nodes=data.num_nodes)
    cfg = UGSConfig(rounds=rounds, mask_epochs=4, fix_epochs=3, seed=1, lr=0.01)
    ugs = UGS(lambda: GCN(adj, data.num_features, data.num_classes, hidden=16),
              NodeClassificationTask(data), cfg, run_dir=run_dir, progress=False)
    records = ugs.run()
    return records, dict(ugs.masks), state_without_masks(ugs.model)


# --------------------------------------------------------------------------- two ranks


def _save(out: Path, name: str, rank: int, records: Any, masks: dict, state: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in masks.items()}, out / f"{name}_masks_{rank}.st")
    save_file({k: v.contiguous() for k, v in state.items()}, out / f"{name}_state_{rank}.st")
    (out / f"{name}_records_{rank}.json").write_text(json.dumps(records))


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      TORCHELASTIC_USE_AGENT_STORE="True")
    torch.set_num_threads(1)
    from sparselth import _io
    from sparselth.utils import distributed

    out_dir = Path(out)
    written: list[str] = []
    write = _io.atomic_write_bytes

    def counted(path, data, *args, **kwargs):
        written.append(str(path))
        write(path, data, *args, **kwargs)

    _io.atomic_write_bytes = counted
    assert distributed.init_from_env(timeout_s=60)
    report: dict[str, Any] = {"world": list(distributed.world())}
    n = len(written)
    _save(out_dir, "imp", rank, *imp_search(out_dir / "imp"))
    report["imp_writes"] = len(written) - n
    n = len(written)
    _save(out_dir, "ugs", rank, *ugs_search(out_dir / "ugs"))
    report["ugs_writes"] = len(written) - n
    # a round run on one process before (by the test), continued on two
    _save(out_dir, "resumed", rank, *imp_search(out_dir / "resume"))
    planted = {"keep": torch.ones(4, dtype=torch.bool),
               "planted": torch.tensor([True, rank == 0, True])}
    try:
        distributed.check_same(planted, "the planted masks")
    except RuntimeError as e:
        report["planted_error"] = str(e)
    grads = [torch.nn.Parameter(torch.zeros(3)) for _ in range(3)]
    grads[0].grad = torch.full((3,), rank + 1.0)      # on both ranks: summed
    if rank == 0:
        grads[1].grad = torch.arange(3.0)             # on rank 0 only: zeros elsewhere
    distributed.all_reduce_gradients(grads)           # grads[2]: on no rank, stays None
    report["grads"] = [None if p.grad is None else p.grad.tolist() for p in grads]
    try:
        imp_search(out_dir / "diverging", rounds=1, diverge=True)
    except RuntimeError as e:
        report["diverged_error"] = str(e)
    (out_dir / f"report_{rank}.json").write_text(json.dumps(report))
    distributed.shutdown()
    # Everything is written and the group is gone; leave without the interpreter's teardown,
    # where gloo's store threads now and then abort the process ("terminate called without an
    # active exception") after a run that succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_two_ranks(out: Path) -> None:
    """Every search above on two gloo processes started as torchrun starts them: its
    environment variables, the rendezvous store held by the launcher (this process), so it
    outlives every rank."""
    import torch.multiprocessing as mp
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, world_size=2, is_master=True, wait_for_workers=False)
    try:
        mp.spawn(_rank, args=(store.port, str(out)), nprocs=2, join=True)
    finally:
        del store
