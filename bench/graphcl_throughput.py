"""GraphCL pre-training throughput: sparselth's pipeline against the same pipeline written with
torch_geometric (an optional peer: ``pip install torch_geometric``; without it only sparselth is
timed).

``python -m bench.graphcl_throughput --dataset NCI1 --data DIR --batch-size 128 --threads 1``

One training step of the unsupervised TU protocol (original graph + a ``random4`` view with the
reference's ratios: 10 % node dropping, 10 % removal-only edge perturbation, 10 % Gaussian
attribute masking, the one-hop 20 % subgraph, isolated nodes and self loops dropped after the
node-removing augmentations; GIN 3 x 32, sum readout of every layer, projection head, NT-Xent
τ 0.2, Adam) is split in two stages, each timed per batch of ``--batch-size`` graphs:

- **data**: gather the batch's graphs and make both views. sparselth: one vectorised
  :meth:`GraphBatch.select` and :func:`sparselth.pretrain.graphcl_views` over the whole batch.
  PyG: what a PyG user of GraphCL writes (and the reference code does): a dataset whose
  ``__getitem__`` returns ``(data, augmented data)``, each graph augmented on its own with
  torch and ``torch_geometric.utils`` ops, batched by PyG's ``Collater``.
- **encode**: forward of both views, loss, backward, Adam step. sparselth:
  :class:`sparselth.models.GraphCLGIN` (SpMM on the block-diagonal CSR). PyG: the reference
  encoder (``GINConv`` MLPs, ``BatchNorm1d``, ``global_add_pool``).

Both encoders have the same widths and the same loss; the stages are timed interleaved (one
thread: the CPU clock, medians). Graphs per second = batch size / (data + encode). Results:
``bench/results/graphcl-throughput-<dataset>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparselth.utils.plot import figure, style_axes
from sparselth.utils.records import markdown_table
from sparselth.utils.timing import stopwatch

from . import common

PUBLISHED: dict[str, str] = {
    "graphcl-throughput-NCI1": "--dataset NCI1 --batch-size 128 --threads 1",
}
TARGET = 2.0  # sparselth's graphs/s over the PyG pipeline's, end to end

# the unsupervised TU code's augmentation ratios (PAPERS.md §3.3)
NODE_RATIO, EDGE_RATIO, MASK_RATIO, SUBGRAPH_RATIO = 0.1, 0.1, 0.1, 0.2


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("graphcl_throughput", "GraphCL pre-training throughput (graphs/s), "
                          "sparselth against a torch_geometric pipeline.")
    p.add_argument("--dataset", default="NCI1", help="TU dataset name")
    p.add_argument("--data", type=Path, default=common.default_data_dir(),
                   help="folder holding tu/<name> or gin/<name>")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=8,
                   help="distinct batches cycled through while timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    p.add_argument("--quick", action="store_true", help="short timing budget")
    common.add_timing_args(p, budget=(6.0, 1.0))
    common.add_output_args(p)
    return p


def output_name(args: argparse.Namespace) -> str:
    return f"graphcl-throughput-{common.safe_name(args.dataset)}"


def run_protocol(args: argparse.Namespace) -> dict:
    return {"dataset": args.dataset, "batch_size": args.batch_size, "threads": args.threads}


# --------------------------------------------------------------------------- the PyG pipeline
def pyg_available() -> bool:
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        return False
    return True


def to_pyg(ds: Any) -> list:
    """The dataset's graphs as PyG ``Data`` (``edge_index = [source, target]``)."""
    from torch_geometric.data import Data

    out = []
    for g in ds:
        a = g.adj
        ei = torch.stack([a.col.long(), a.row()])
        out.append(Data(x=g.x, edge_index=ei, y=g.y))
    return out


def _keep_nodes(data: Any, keep: Tensor) -> Any:
    from torch_geometric.data import Data
    from torch_geometric.utils import subgraph

    keep = keep.sort().values
    ei, _ = subgraph(keep, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes)
    return Data(x=data.x[keep], edge_index=ei, y=data.y)


def _drop_isolated(data: Any) -> Any:
    from torch_geometric.utils import remove_self_loops

    ei, _ = remove_self_loops(data.edge_index)
    used = torch.zeros(data.num_nodes, dtype=torch.bool)
    used[ei.reshape(-1)] = True
    if not bool(used.any()):
        used[0] = True
    data = data.clone()
    data.edge_index = ei
    return _keep_nodes(data, used.nonzero().squeeze(1))


def pyg_augment(data: Any, kind: str, gen: torch.Generator) -> Any:
    """One graph's augmented view, per graph, as the reference code does it."""
    n = data.num_nodes
    if kind == "dnodes":
        k = int(n * NODE_RATIO)
        return _drop_isolated(_keep_nodes(data, torch.randperm(n, generator=gen)[k:]))
    if kind == "pedges":
        e = data.edge_index.shape[1]
        keep = torch.randperm(e, generator=gen)[int(e * EDGE_RATIO):]
        out = data.clone()
        out.edge_index = data.edge_index[:, keep.sort().values]
        return out
    if kind == "mask_nodes":
        idx = torch.randperm(n, generator=gen)[:int(n * MASK_RATIO)]
        out = data.clone()
        x = data.x.clone()
        x[idx] = torch.normal(0.5, 0.5, (idx.numel(), x.shape[1]), generator=gen)
        out.x = x
        return out
    # subgraph, one-hop as the reference: the start node and up to floor(0.2 n) neighbours
    start = int(torch.randint(n, (1,), generator=gen))
    ei = data.edge_index
    nb = ei[1][ei[0] == start].unique()
    nb = nb[nb != start]
    pick = nb[torch.randperm(nb.numel(), generator=gen)[:int(n * SUBGRAPH_RATIO)]]
    return _drop_isolated(_keep_nodes(data, torch.cat([torch.tensor([start]), pick])))


class PyGViews(torch.utils.data.Dataset):
    """``(original, random4 view)`` per graph, as the reference's dataset returns them."""

    KINDS = ("dnodes", "subgraph", "pedges", "mask_nodes")

    def __init__(self, graphs: list, seed: int = 0):
        self.graphs, self.gen = graphs, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int):
        data = self.graphs[i]
        kind = self.KINDS[int(torch.randint(4, (1,), generator=self.gen))]
        return data, pyg_augment(data, kind, self.gen)


class PyGGIN(nn.Module):
    """The reference encoder with PyG layers: GINConv(Linear-ReLU-Linear), ReLU, BatchNorm, sum
    readout of every layer, projection head."""

    def __init__(self, in_dim: int, hidden: int = 32, num_layers: int = 3):
        super().__init__()
        from torch_geometric.nn import GINConv

        self.convs = nn.ModuleList(
            GINConv(nn.Sequential(nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden))) for i in range(num_layers))
        self.bns = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_layers))
        d = hidden * num_layers
        self.proj_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, data: Any) -> Tensor:
        from torch_geometric.nn import global_add_pool

        x, pooled = data.x, []
        for conv, bn in zip(self.convs, self.bns):
            x = bn(F.relu(conv(x, data.edge_index)))
            pooled.append(global_add_pool(x, data.batch, size=data.num_graphs))
        return self.proj_head(torch.cat(pooled, 1))


# --------------------------------------------------------------------------- the two contenders
def _cycle(items: list) -> Callable[[], Any]:
    state = {"i": 0}

    def nxt():
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]
    return nxt


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, views: Any) -> None:
    from sparselth.pretrain.loss import nt_xent

    v1, v2 = views
    loss = nt_xent(model(v1), model(v2), 0.2, "reference")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def contenders(ds: Any, args: argparse.Namespace, pyg: bool) -> dict[str, Callable[[], Any]]:
    """``{"<pipeline> data", "<pipeline> encode"}`` callables, each doing one batch."""
    from sparselth.models import GraphCLGIN
    from sparselth.pretrain.augment import AugmentConfig, graphcl_views

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(ds), generator=gen)
    chunks = [perm[i * args.batch_size:(i + 1) * args.batch_size] for i in range(args.batches)]
    chunks = [c for c in chunks if c.numel()]
    cfg = AugmentConfig.reference("unsupervised_TU")
    data = ds.data
    next_chunk = _cycle(chunks)

    def ours_data():
        b = data.select(next_chunk())
        return graphcl_views(b, "random4", "random4", cfg, generator=gen)

    model = GraphCLGIN(ds.num_features)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    our_views = _cycle([graphcl_views(data.select(c), "random4", "random4", cfg, generator=gen)
                        for c in chunks])
    fns: dict[str, Callable[[], Any]] = {
        "sparselth data": ours_data,
        "sparselth encode": lambda: _train_step(model, opt, our_views()),
    }
    if pyg:
        from torch_geometric.loader.dataloader import Collater

        views = PyGViews(to_pyg(ds), seed=args.seed)
        collate = Collater(views)
        pchunk = _cycle(chunks)

        def pyg_data():
            return collate([views[int(i)] for i in pchunk()])

        pmodel = PyGGIN(ds.num_features)
        popt = torch.optim.Adam(pmodel.parameters(), lr=0.01)
        pyg_views = _cycle([collate([views[int(i)] for i in c]) for c in chunks])
        fns["pyg data"] = pyg_data
        fns["pyg encode"] = lambda: _train_step(pmodel, popt, pyg_views())
    return fns


def summarise(meas: Any, batch_size: int, pipelines: list[str]) -> dict[str, Any]:
    rows = {}
    for p in pipelines:
        d, e = meas.ms(f"{p} data"), meas.ms(f"{p} encode")
        rows[p] = {"data_ms": d, "encode_ms": e, "step_ms": d + e,
                   "graphs_per_s": batch_size / ((d + e) * 1e-3),
                   "data_graphs_per_s": batch_size / (d * 1e-3),
                   "encode_graphs_per_s": batch_size / (e * 1e-3)}
    out: dict[str, Any] = {"pipelines": rows}
    if "pyg" in rows:
        o, p = rows["sparselth"], rows["pyg"]
        out["speedup"] = {k: o[f"{k}graphs_per_s"] / p[f"{k}graphs_per_s"]
                          for k in ("", "data_", "encode_")}
        out["speedup"] = {"end_to_end": out["speedup"][""], "data": out["speedup"]["data_"],
                          "encode": out["speedup"]["encode_"]}
        out["target_met"] = out["speedup"]["end_to_end"] >= TARGET
    return out


def markdown(rep: dict[str, Any]) -> str:
    s = rep["summary"]
    lines = [f"# GraphCL pre-training throughput, {rep['dataset']}, batch {rep['batch_size']}", ""]
    if "speedup" in s:
        sp = s["speedup"]
        lines += [f"sparselth runs **{sp['end_to_end']:.2f}x** the graphs/s of the PyG pipeline "
                  f"end to end (target {TARGET:g}x: {'met' if s['target_met'] else 'not met'}); "
                  f"data {sp['data']:.2f}x, encode {sp['encode']:.2f}x.", ""]
    else:
        lines += ["torch_geometric is not installed: only sparselth was timed.", ""]
    rows = [[p, f"{r['data_ms']:.2f}", f"{r['encode_ms']:.2f}", f"{r['step_ms']:.2f}",
             f"{r['graphs_per_s']:.0f}"] for p, r in s["pipelines"].items()]
    lines += [markdown_table(["pipeline", "data ms", "encode ms", "step ms", "graphs/s"], rows),
              "", common.clock_sentence(rep["timing"]["clock"], rep["timing"]["threads"]),
              "", "Data = the batch's graphs gathered and both views made (original + random4, "
              "the unsupervised TU ratios); encode = forward of both views, NT-Xent, backward, "
              "Adam step. Same encoder widths and loss in both pipelines. The PyG pipeline "
              "augments graph by graph in its dataset's `__getitem__` (as the reference code "
              "and PyG's per-graph transforms do) and batches with PyG's `Collater`; sparselth "
              "augments the whole batch at once on its block-diagonal CSR.",
              f"torch_geometric: {rep.get('torch_geometric') or 'not installed'}.", "",
              *common.notes_section(rep.get("notes", [])), *common.machine_section(rep["machine"])]
    return "\n".join(lines)


def plot(rep: dict[str, Any]):
    fig, ax = figure(1, width=6, height=4)
    pipes = list(rep["summary"]["pipelines"])
    data = [rep["summary"]["pipelines"][p]["data_ms"] for p in pipes]
    enc = [rep["summary"]["pipelines"][p]["encode_ms"] for p in pipes]
    ax.bar(pipes, data, label="data (gather + 2 views)")
    ax.bar(pipes, enc, bottom=data, label="encode (fwd, loss, bwd, Adam)")
    style_axes(ax, ylabel=f"ms per batch of {rep['batch_size']}",
               title=f"GraphCL step, {rep['dataset']} ({rep['timing']['clock']} clock)")
    ax.legend()
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.batches < 1:
        parser.error("--batch-size and --batches must be positive")
    name = output_name(args)
    dest = common.result_path(name, args, PUBLISHED, parser=parser, protocol=run_protocol)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sparselth.data import load_tu

    machine = common.machine()
    clock = stopwatch()
    ds = load_tu(args.dataset, args.data)
    pyg = pyg_available()
    fns = contenders(ds, args, pyg)
    meas = common.time_contenders(fns, common.timing_config(args, budget=(6.0, 1.0)))
    pipes = ["sparselth"] + (["pyg"] if pyg else [])
    rep: dict[str, Any] = {
        "suite": "graphcl_throughput", "dataset": args.dataset, "batch_size": args.batch_size,
        "command": "python -m bench.graphcl_throughput " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "summary": summarise(meas, args.batch_size, pipes), "timing": meas.to_dict(),
        "torch_geometric": _pyg_version() if pyg else None, "seconds": clock(),
        "machine": machine, "target": TARGET,
    }
    rep["notes"] = common.finish_machine(machine)
    fig = None if args.no_plot else plot(rep)
    common.write_result(dest, rep, markdown(rep), fig)
    print(markdown(rep).split("\n\n")[1], file=sys.stderr)
    return rep


def _pyg_version() -> str:
    import torch_geometric

    return torch_geometric.__version__


if __name__ == "__main__":
    main()
