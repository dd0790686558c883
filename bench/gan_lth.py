"""Reproduce "GANs Can Play Lottery Tickets Too" (Chen et al. 2021; PAPERS.md §2) at CPU size:
SNGAN tickets by iterative magnitude pruning of the generator, beside random tickets.

``python -m bench.gan_lth --model sngan --dataset fashion-mnist --data DIR``

runs :class:`sparselth.train.GANTicketSearch` (round 0 dense, then ``--rounds`` rounds pruning
20 % of G's surviving conv weights, G rewound to θ0, D per ``--d-init``; ``--variant impgd``
and ``impgd-kd`` prune D too), and with ``--random`` the same schedule with random masks
(``ticket="random_mask"``), both resumable in ``--runs`` (default ``runs/gan``). Every
``--eval-every`` G iterations the EMA generator draws ``--eval-samples`` images from fixed noise
and is scored against ``--real-samples`` held-out real images:

- **FID / IS**: with the standard Inception-v3 weights (``--fid-weights`` or
  ``$SPARSELTH_FID_WEIGHTS``) the published definition; otherwise a **proxy** FID/IS whose
  feature network (:class:`sparselth.models.ImageFeatureNet`) is trained on the dataset's
  training split once and kept (with the hash of its weights) in ``runs/gan/``. Proxy numbers
  are comparable only among themselves (the report names the network and its hash).

Writes ``bench/results/gan-sngan-<dataset>[-<variant>].{json,md,png}`` (FID per round against
the remaining conv weights of G, the dense line, the random tickets, MACs of G) and
``...-samples.png`` (a grid of samples per round). The defaults are a reduced protocol
(``--g-ch 32 --d-ch 32``, 28x28, ``--iterations 2000``, ``--n-critic 2``, batches 32/64, EMA
0.99); the
paper's CIFAR-10 configuration is ``--paper`` (for GPU users; needs CIFAR-10 files).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sparselth.utils.plot import figure, save_png, style_axes
from sparselth.utils.records import markdown_table
from sparselth.utils.timing import stopwatch

from . import common

PUBLISHED = {"gan-sngan-fashion-mnist": "--dataset fashion-mnist --rounds 7 --random --threads 1"}
DATASETS = ("fashion-mnist", "mnist-5k", "cifar10", "synthetic")
MATCH = 0.05  # a ticket "matches" when its FID is within 5 % of the dense G's
# the settings --compare puts in one table: the IMP variants, and the D initialisations
COMPARED = (("impg", "init"), ("impgd", "init"), ("impgd-kd", "init"), ("impg", "trained"),
            ("impg", "seed"))


def build_parser() -> argparse.ArgumentParser:
    p = common.new_parser("gan_lth", "GAN lottery tickets (SNGAN), FID per pruning round "
                          "beside random tickets.")
    p.add_argument("--model", choices=["sngan", "cyclegan"], default="sngan")
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--data", type=Path, default=common.default_data_dir())
    p.add_argument("--variant", choices=["impg", "impgd", "impgd-kd"], default="impg")
    p.add_argument("--d-init", choices=["init", "trained", "seed"], default="init")
    p.add_argument("--rewind", choices=["init", "late"], default="init")
    p.add_argument("--late-iterations", type=int, default=0)
    p.add_argument("--oneshot", action="store_true")
    p.add_argument("--random", action="store_true", help="also run random tickets")
    p.add_argument("--compare", action="store_true",
                   help="SNGAN: also run IMPGD, IMPGD-KD and IMPG with D initialised from the "
                   "trained dense D and from another seed; one table of best FID per round")
    p.add_argument("--transfer", choices=DATASETS, default=None,
                   help="SNGAN: also train every round's ticket on this dataset (and a dense G "
                   "there, round 0)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--iterations", type=int, default=2000, help="G iterations per round")
    p.add_argument("--g-ch", type=int, default=32)
    p.add_argument("--d-ch", type=int, default=32)
    p.add_argument("--latent-dim", type=int, default=128)
    p.add_argument("--n-critic", type=int, default=2)
    p.add_argument("--d-batch", type=int, default=32)
    p.add_argument("--g-batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--ema-decay", type=float, default=0.99,
                   help="EMA of G (the reference's 0.999 spans 1,000 iterations: most of a "
                   "reduced run; --paper uses it)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--real-samples", type=int, default=5000)
    p.add_argument("--train-images", type=int, default=0,
                   help="use the first N training images (0: all)")
    p.add_argument("--domain-a", default="sneaker", help="CycleGAN: class of domain A")
    p.add_argument("--domain-b", default="ankle boot", help="CycleGAN: class of domain B")
    p.add_argument("--ngf", type=int, default=16, help="CycleGAN generator width")
    p.add_argument("--n-res", type=int, default=3, help="CycleGAN residual blocks")
    p.add_argument("--ndf", type=int, default=16, help="PatchGAN width")
    p.add_argument("--d-layers", type=int, default=2, help="PatchGAN layers")
    p.add_argument("--batch-size", type=int, default=4, help="CycleGAN images per domain")
    p.add_argument("--paper", action="store_true",
                   help="the paper's CIFAR-10 configuration (ch 256/128, 50k iterations, "
                   "n_critic 5, batches 64/128)")
    p.add_argument("--fid-weights", type=Path, default=None,
                   help="the Inception FID weights file (standard FID); default: a proxy")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=Path, default=None, help="run-folder root")
    common.add_output_args(p)
    return p


def apply_paper(args: argparse.Namespace) -> None:
    if args.paper:
        args.dataset = "cifar10" if args.dataset == "fashion-mnist" else args.dataset
        args.g_ch, args.d_ch, args.iterations = 256, 128, 50_000
        args.n_critic, args.d_batch, args.g_batch, args.eval_every = 5, 64, 128, 2_500
        args.ema_decay = 0.999


def run_protocol(args: argparse.Namespace) -> dict:
    keys = ("model", "dataset", "compare", "transfer", "domain_a", "domain_b", "ngf", "n_res", "ndf", "d_layers",
            "batch_size", "variant", "d_init", "rewind", "late_iterations", "oneshot",
            "random", "rounds", "iterations", "g_ch", "d_ch", "latent_dim", "n_critic",
            "d_batch", "g_batch", "lr", "ema_decay", "eval_every", "eval_samples",
            "real_samples", "train_images", "seed", "threads")
    return {k: getattr(args, k) for k in keys}


def output_name(args: argparse.Namespace) -> str:
    tail = "" if args.variant == "impg" else f"-{args.variant}"
    if args.compare:
        tail = "-compare"
    if args.transfer:
        tail += f"-transfer-{args.transfer}"
    return f"gan-{args.model}-{args.dataset}{tail}"


# --------------------------------------------------------------------------- data and scores
def load_images(args: argparse.Namespace, dataset: str | None = None) -> tuple:
    """``(train images in [-1, 1], held-out images in [0, 1], their labels, train images in
    [0, 1], train labels)`` of ``dataset`` (default ``--dataset``)."""
    dataset = dataset or args.dataset
    from sparselth.data import (load_cifar10, load_fashion_mnist, load_mnist_5k,
                                synthetic_images)

    if dataset == "fashion-mnist":
        (x, y), (xt, yt) = load_fashion_mnist(args.data, "train"), \
            load_fashion_mnist(args.data, "test")
    elif dataset == "cifar10":
        (x, y), (xt, yt) = load_cifar10(args.data, "train"), load_cifar10(args.data, "test")
    elif dataset == "mnist-5k":
        x5, y5 = load_mnist_5k(args.data)
        perm = torch.randperm(x5.shape[0], generator=torch.Generator().manual_seed(0))
        x, y, xt, yt = x5[perm[1000:]], y5[perm[1000:]], x5[perm[:1000]], y5[perm[:1000]]
    else:
        x, y = synthetic_images(4000, 10, 28, 1, noise=0.3, seed=0)
        xt, yt = synthetic_images(2000, 10, 28, 1, noise=0.3, seed=0, sample_seed=1)
        lo, hi = x.min(), x.max()
        x, xt = (x - lo) / (hi - lo), ((xt - lo) / (hi - lo)).clamp(0, 1)
    if args.train_images:
        x, y = x[:args.train_images], y[:args.train_images]
    return x * 2 - 1, xt, yt, x, y


def feature_network(args: argparse.Namespace, x01: torch.Tensor, y: torch.Tensor,
                    xt: torch.Tensor, yt: torch.Tensor, runs: Path,
                    dataset: str | None = None) -> tuple:
    """``(network, name)``: the Inception FID network, or the dataset's proxy (trained once)."""
    dataset = dataset or args.dataset
    from sparselth.models import fid_inception
    from sparselth.train import load_feature_net, save_feature_net, train_feature_net

    weights = args.fid_weights
    if weights is not None or os.environ.get("SPARSELTH_FID_WEIGHTS"):
        return fid_inception(weights), "inception-v3-fid"
    path = runs / f"features-{dataset}.safetensors"
    if not path.is_file():
        net, info = train_feature_net(x01, y, xt, yt, name=dataset, epochs=2,
                                      progress=not args.no_progress)
        save_feature_net(path, net, info)
    return load_feature_net(path), f"proxy:ImageFeatureNet({dataset})"


def make_evaluator(net: Any, name: str, real: Any, args: argparse.Namespace
                   ) -> Callable[[torch.nn.Module], dict]:
    from sparselth.metrics import feature_stats, fid_score, inception_score

    def evaluate(G: torch.nn.Module) -> dict:
        gen = torch.Generator().manual_seed(4242)
        imgs = []
        with torch.no_grad():
            for n in [256] * (args.eval_samples // 256) + [args.eval_samples % 256]:
                if n:
                    imgs.append((G(torch.randn(n, G.latent_dim, generator=gen)) + 1) / 2)
        fake_x = torch.cat(imgs).clamp(0, 1)
        fake = feature_stats(net, fake_x, network=name, split="generated")
        probs = torch.cat([net.class_probs(b) for b in fake_x.split(256)]).double()
        return {"fid": fid_score(real, fake)["fid"],
                "is": inception_score(probs, splits=min(10, args.eval_samples))["is"]}
    return evaluate


# --------------------------------------------------------------------------- report
def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append({"round": r["round"], "remaining": r["remaining"],
                     "best_fid": m.get("best_fid"), "last_fid": m.get("fid"),
                     "is": m.get("is"), "macs": r.get("macs"), "macs_dense": r.get("macs_dense"),
                     "seconds": r.get("seconds")})
    return rows


def matching(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sparsest round whose best FID is within :data:`MATCH` of the dense round's."""
    if not rows or rows[0]["best_fid"] is None:
        return {}
    dense = rows[0]["best_fid"]
    ok = [r for r in rows[1:] if r["best_fid"] is not None and r["best_fid"] <= dense * (1 + MATCH)]
    best = min(ok, key=lambda r: r["remaining"]) if ok else None
    return {"dense_fid": dense, "sparsest_matching_round": best and best["round"],
            "sparsest_matching_sparsity": best and 1 - best["remaining"]}


def markdown(rep: dict[str, Any]) -> str:
    ticket, rnd = rep["tickets"], rep.get("random")
    model = {"sngan": "SNGAN", "cyclegan": "CycleGAN"}.get(rep.get("model"), rep.get("model"))
    lines = [f"# GAN tickets: {model} on {rep['dataset']} ({rep['variant']})", ""]
    m = rep["matching"]
    if m:
        sp = m["sparsest_matching_sparsity"]
        lines += [f"Dense G: best FID {m['dense_fid']:.2f} ({rep['fid_network']}). Sparsest "
                  f"ticket within {MATCH:.0%} of it: "
                  + ("none" if sp is None else f"round {m['sparsest_matching_round']}, "
                     f"{100 * sp:.1f} % of G's conv weights pruned") + ".", ""]
    head = ["round", "remaining %", "best FID", "last FID", "IS", "MACs / image"]
    if rnd:
        head += ["random: best FID"]
    rows = []
    for i, r in enumerate(ticket):
        row = [r["round"], f"{100 * r['remaining']:.1f}", _f(r["best_fid"]), _f(r["last_fid"]),
               _f(r["is"]), f"{r['macs']:,}" if r["macs"] else ""]
        if rnd:
            row.append(_f(rnd[i]["best_fid"]) if i < len(rnd) else "")
        rows.append(row)
    lines += [markdown_table(head, rows), ""]
    if rep.get("real_halves_fid") is not None:
        lines += [f"FID between two disjoint halves of the held-out real images (the floor): "
                  f"{rep['real_halves_fid']:.3f}.", ""]
    cmp_ = rep.get("compare")
    if cmp_:
        names = list(cmp_)
        n = max(len(v) for v in cmp_.values())
        first = next(iter(cmp_.values()))
        lines += ["## Variants and D initialisations (best FID per round)", "",
                  markdown_table(["round", "remaining %"] + names,
                                 [[r, f"{100 * first[r]['remaining']:.1f}" if r < len(first)
                                   else ""] + [_f(cmp_[k][r]["best_fid"]) if r < len(cmp_[k])
                                               else "" for k in names] for r in range(n)]),
                  "", "Round 0 differs between settings only where D differs (IMPGD prunes D "
                  "from round 1; the D initialisation matters from round 1).", ""]
    tr = rep.get("transfer")
    if tr:
        d = tr["tickets"][0]["best_fid"]
        lines += [f"## Transfer: the tickets trained on {tr['dataset']}", "",
                  f"Each round's masks trained from θ0 on {tr['dataset']} (FID network "
                  f"{tr['fid_network']}, sha256 {tr['fid_network_hash'][:16]}...); round 0 is a "
                  f"dense G trained there (best FID {_f(d)}). Rounds within 10 % of it: "
                  f"{tr['within_10pct'] or 'none'}.", "",
                  markdown_table(["round", "remaining %", "best FID", "last FID"],
                                 [[r["round"], f"{100 * r['remaining']:.1f}", _f(r["best_fid"]),
                                   _f(r["last_fid"])] for r in tr["tickets"]]), ""]
    lines += [f"Protocol: {rep['protocol_text']}", "",
              f"FID network: {rep['fid_network']} (weights sha256 {rep['fid_network_hash'][:16]}"
              f"...); {rep['eval_text']}. "
              + ("This is a proxy FID: compare it only with numbers of the same network hash."
                 if rep["fid_network"].startswith("proxy") else ""), "",
              *common.notes_section(rep.get("notes", [])),
              *common.machine_section(rep["machine"])]
    return "\n".join(lines)


def _f(v: Any) -> str:
    return "" if v is None else f"{v:.2f}"


def plot(rep: dict[str, Any]):
    tr = rep.get("transfer")
    fig, axes = figure(2 if tr else 1, width=11 if tr else 6, height=4)
    ax = axes[0] if tr else axes
    if tr:
        t2 = tr["tickets"]
        axes[1].plot([100 * r["remaining"] for r in t2], [r["best_fid"] for r in t2], "o-",
                     label=f"tickets trained on {tr['dataset']}")
        axes[1].axhline(t2[0]["best_fid"], color="grey", ls=":", label="dense G there")
        common.log_ticks(axes[1], [round(100 * r["remaining"], 1) for r in t2])
        axes[1].invert_xaxis()
        style_axes(axes[1], xlabel="remaining conv weights of G (%)", ylabel="best FID",
                   title=f"transfer to {tr['dataset']}")
    t = rep["tickets"]
    ax.plot([100 * r["remaining"] for r in t], [r["best_fid"] for r in t], "o-",
            label=f"{rep['variant']} tickets")
    if rep.get("random"):
        rr = rep["random"]
        ax.plot([100 * r["remaining"] for r in rr], [r["best_fid"] for r in rr], "s--",
                label="random tickets")
    if t and t[0]["best_fid"] is not None:
        ax.axhline(t[0]["best_fid"], color="grey", ls=":", label="dense G")
    common.log_ticks(ax, [round(100 * r["remaining"], 1) for r in t])
    ax.invert_xaxis()
    style_axes(ax, xlabel="remaining conv weights of G (%)", ylabel="best FID (lower is better)",
               title=f"{rep.get('model', 'sngan')} tickets, {rep['dataset']}")
    return fig


def sngan_samples(run_dir: Path, rounds: int) -> list:
    """The first 8 fixed-noise samples of each round's EMA generator."""
    from sparselth.prune.run import RunDir

    folder = RunDir(run_dir, "gan")
    prog = json.loads((run_dir / "progress.json").read_text())
    folder.files = dict(prog["files"])
    return [folder.load(f"round_{r:03d}/samples.safetensors")["images"][:8]
            for r in range(rounds)]


def cyclegan_samples(run_dir: Path, rounds: int, config: Any, images_a: torch.Tensor) -> list:
    """The first 8 held-out A images, then what each round's A->B generator makes of them."""
    from sparselth.models import CycleGANGenerator
    from sparselth.prune.run import read_round

    G = CycleGANGenerator(config.channels, config.ngf, config.n_res).eval()
    rows = [images_a[:8]]
    for r in range(rounds):
        G.load_state_dict(read_round(run_dir, r)["trained_state"])
        with torch.no_grad():
            rows.append(G(images_a[:8]))
    return rows


def sample_grid(rows: list, labels: list, title: str):
    fig, axes = figure(8, len(rows), width=8, height=max(1.2, len(rows)))
    axes = np.array(axes).reshape(len(rows), 8)
    for i, imgs in enumerate(rows):
        for j in range(min(8, imgs.shape[0])):
            a = axes[i, j]
            img = ((imgs[j] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
            a.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            a.set_xticks([])
            a.set_yticks([])
            if j == 0:
                a.set_ylabel(labels[i], fontsize=7)
    fig.suptitle(title)
    return fig


def run_sngan(args: argparse.Namespace, x: torch.Tensor, evaluate: Any, root: Path) -> dict:
    from sparselth.train import GANTicketConfig, GANTicketSearch

    size, channels = x.shape[-1], x.shape[1]
    base = dict(dataset=args.dataset, image_size=size, channels=channels,
                bottom_width=4 if args.paper else size // 4, latent_dim=args.latent_dim,
                g_ch=args.g_ch, d_ch=args.d_ch, iterations=args.iterations,
                n_critic=args.n_critic, d_batch=args.d_batch, g_batch=args.g_batch, lr=args.lr,
                ema_decay=args.ema_decay, variant=args.variant, d_init=args.d_init,
                rewind=args.rewind, late_iterations=args.late_iterations,
                oneshot=args.oneshot, rounds=args.rounds, eval_every=args.eval_every,
                seed=args.seed)
    search = GANTicketSearch(x, GANTicketConfig(**base), evaluate, root=root,
                             progress=not args.no_progress)
    out = {"config": GANTicketConfig(**base).to_dict(), "tickets": summarise(search.run()),
           "random": None}
    if args.random:
        rs = GANTicketSearch(x, GANTicketConfig(**base, ticket="random_mask"), evaluate,
                             root=root, progress=not args.no_progress)
        out["random"] = summarise(rs.run())
    n = len(out["tickets"])
    out["grid"] = (sngan_samples(search.run_dir, n), [f"round {r}" for r in range(n)])
    if args.transfer:
        out["transfer"] = run_transfer(args, base, search.run_dir, root.parent)
    if args.compare:
        out["compare"] = {f"{args.variant}, D {args.d_init}": out["tickets"]}
        for variant, d_init in COMPARED:
            key = f"{variant}, D {d_init}"
            if key not in out["compare"]:
                cfg = GANTicketConfig(**{**base, "variant": variant, "d_init": d_init})
                out["compare"][key] = summarise(GANTicketSearch(
                    x, cfg, evaluate, root=root, progress=not args.no_progress).run())
    out["protocol_text"] = (
        f"SNGAN G ch {args.g_ch}, D ch {args.d_ch}, {size}x{size}, {args.iterations} G "
        f"iterations per round, n_critic {args.n_critic}, batches {args.d_batch}/"
        f"{args.g_batch}, Adam {args.lr:g} (0, 0.9), EMA {args.ema_decay}; {args.rounds} rounds "
        f"of 20 %; D init {args.d_init}; rewind {args.rewind}. The paper: CIFAR-10, ch 256/128, "
        "50,000 iterations, n_critic 5, batches 64/128 (--paper).")
    return out


def real_halves_fid(net: Any, name: str, xt: torch.Tensor, n: int) -> float:
    """FID between two disjoint halves of ``n`` held-out images: the floor a G can reach."""
    from sparselth.metrics import feature_stats, fid_score

    half = min(n, xt.shape[0]) // 2
    return fid_score(feature_stats(net, xt[:half], network=name),
                     feature_stats(net, xt[half:2 * half], network=name))["fid"]


def run_transfer(args: argparse.Namespace, base: dict, source: Path, runs: Path) -> dict:
    """Every round's masks of ``source`` trained on ``--transfer`` (round 0: a dense G there)."""
    from sparselth.metrics import feature_stats
    from sparselth.train import GANTicketConfig, GANTicketSearch

    x, xt, yt, x01, y = load_images(args, args.transfer)
    net, name = feature_network(args, x01, y, xt, yt, runs, args.transfer)
    real = feature_stats(net, xt[:args.real_samples], network=name, split="held-out")
    cfg = GANTicketConfig(**{**base, "dataset": args.transfer, "transfer_from": str(source)})
    rows = summarise(GANTicketSearch(x, cfg, make_evaluator(net, name, real, args),
                                     root=runs / args.transfer,
                                     progress=not args.no_progress).run())
    dense = rows[0]["best_fid"]
    return {"dataset": args.transfer, "fid_network": name, "fid_network_hash": real.network_hash,
            "tickets": rows, "within_10pct": [r["round"] for r in rows[1:]
                                              if r["best_fid"] is not None
                                              and r["best_fid"] <= 1.1 * dense]}


def run_cyclegan(args: argparse.Namespace, data: tuple, net: Any, net_name: str,
                 root: Path) -> dict:
    """The unpaired task ``--domain-a`` <-> ``--domain-b`` (two classes of the dataset): FID of
    the translations of held-out images against held-out images of the target domain."""
    from sparselth.data import unpaired_classes
    from sparselth.metrics import feature_stats, fid_score
    from sparselth.train import CycleGANTicketConfig, CycleGANTicketSearch

    x, y, xt, yt = data
    da, db = (int(d) if d.isdigit() else d for d in (args.domain_a, args.domain_b))
    a, b = unpaired_classes(x, y, da, db, seed=args.seed)
    ta, tb = unpaired_classes(xt * 2 - 1, yt, da, db, seed=args.seed)
    ta, tb = ta[:args.real_samples], tb[:args.real_samples]
    real_a = feature_stats(net, (ta + 1) / 2, network=net_name, split="held-out A")
    real_b = feature_stats(net, (tb + 1) / 2, network=net_name, split="held-out B")

    def evaluate(nets: Any) -> dict:
        fa = torch.cat([nets["G_BA"](c) for c in tb.split(256)])
        fb = torch.cat([nets["G_AB"](c) for c in ta.split(256)])
        return {"fid_ab": fid_score(real_b, feature_stats(net, ((fb + 1) / 2).clamp(0, 1),
                                                            network=net_name))["fid"],
                "fid_ba": fid_score(real_a, feature_stats(net, ((fa + 1) / 2).clamp(0, 1),
                                                            network=net_name))["fid"]}

    base = dict(dataset=f"{args.dataset}:{args.domain_a}<->{args.domain_b}",
                image_size=x.shape[-1], channels=x.shape[1], ngf=args.ngf, n_res=args.n_res,
                ndf=args.ndf, d_layers=args.d_layers, iterations=args.iterations,
                batch_size=args.batch_size, lr=args.lr, decay_start=args.iterations // 2,
                variant="impgd" if args.variant == "impgd" else "impg", rounds=args.rounds,
                eval_every=args.eval_every, seed=args.seed)
    cfg = CycleGANTicketConfig(**base)
    search = CycleGANTicketSearch(a, b, cfg, evaluate, root=root, progress=not args.no_progress)
    out = {"config": cfg.to_dict(), "tickets": summarise(search.run()), "random": None}
    if args.random:
        rs = CycleGANTicketSearch(a, b, CycleGANTicketConfig(**base, ticket="random_mask"),
                                  evaluate, root=root, progress=not args.no_progress)
        out["random"] = summarise(rs.run())
    n = len(out["tickets"])
    out["grid"] = (cyclegan_samples(search.run_dir, n, cfg, ta),
                   [f"input ({args.domain_a})"] + [f"round {r}" for r in range(n)])
    out["protocol_text"] = (
        f"CycleGAN {args.domain_a} <-> {args.domain_b} ({a.shape[0]} unpaired images per "
        f"domain), G ngf {args.ngf} with {args.n_res} residual blocks, PatchGAN ndf {args.ndf} "
        f"with {args.d_layers} layers, batch {args.batch_size}, {args.iterations} iterations "
        f"per round (lr decaying linearly from the middle), {args.rounds} rounds of 20 % per "
        "generator; FID = mean of the A->B and B->A FIDs on held-out images (the reference "
        "compares with training images). The paper: horse2zebra 256x256, ngf 64, 9 blocks, "
        "batch 1, 200 epochs.")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_paper(args)
    for flag in ("rounds", "iterations", "eval_every", "eval_samples", "real_samples"):
        if getattr(args, flag) < (0 if flag == "rounds" else 2):
            parser.error(f"--{flag.replace('_', '-')} is too small")
    if args.model == "cyclegan" and args.variant == "impgd-kd":
        parser.error("--variant impgd-kd is an SNGAN variant")
    name = output_name(args)
    dest = common.result_path(name, args, PUBLISHED, parser=parser, protocol=run_protocol)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sparselth.metrics import feature_stats

    runs = args.runs or (common.RUNS_DIR / ("" if dest.published else "local") / "gan")
    runs.mkdir(parents=True, exist_ok=True)
    machine = common.machine()
    clock = stopwatch()
    x, xt, yt, x01, y = load_images(args)
    net, net_name = feature_network(args, x01, y, xt, yt, runs)
    root = runs / args.dataset
    if args.model == "sngan":
        real = feature_stats(net, xt[:args.real_samples], network=net_name, split="held-out")
        out = run_sngan(args, x, make_evaluator(net, net_name, real, args), root)
    else:
        real = feature_stats(net, xt[:2], network=net_name)   # names the network's hash
        out = run_cyclegan(args, (x, y, xt, yt), net, net_name, root / "cyclegan")
    rep: dict[str, Any] = {
        "suite": "gan_lth", "model": args.model, "dataset": args.dataset,
        "variant": args.variant, "command": "python -m bench.gan_lth " + " ".join(
            common.portable_argv(argv if argv is not None else sys.argv[1:])),
        "config": out["config"], "tickets": out["tickets"], "random": out["random"],
        "matching": matching(out["tickets"]), "fid_network": net_name,
        "fid_network_hash": real.network_hash, "real_samples": args.real_samples,
        "eval_samples": args.eval_samples, "seconds": clock(), "machine": machine,
        "protocol_text": out["protocol_text"], "transfer": out.get("transfer"),
        "compare": out.get("compare"),
        "real_halves_fid": (real_halves_fid(net, net_name, xt, args.real_samples)
                            if args.model == "sngan" else None),
        "eval_text": (f"real reference: {args.real_samples} held-out images; "
                      f"{args.eval_samples} generated images from fixed noise per evaluation"
                      if args.model == "sngan" else
                      f"up to {args.real_samples} held-out images per domain, translated by "
                      "the other domain's generator, against the held-out images of the target "
                      "domain"),
    }
    rep["notes"] = common.finish_machine(machine)
    fig = None if args.no_plot else plot(rep)
    common.write_result(dest, rep, markdown(rep), fig)
    if not args.no_plot:
        rows, labels = out["grid"]
        save_png(sample_grid(rows, labels, f"{args.model} tickets, {args.dataset}"),
                 dest.file("-samples.png"))
    return rep


if __name__ == "__main__":
    main()
