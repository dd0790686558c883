"""Masks on any model, pruning criteria and strategies, MAC accounting, the run folder and
the drivers (IMP, UGS).

Quick tour::

    import sparselth.prune as prune

    masks = prune.magnitude(model, 0.8)                  # 80% global unstructured
    masks = prune.magnitude(model, 0.5, scope="layer", granularity="channel",
                            exclude=["@first", "@last"])
    masks = prune.random(model, 0.8, seed=0)             # random baseline
    prune.apply(model, masks)                            # buffers <attr>_mask + grad hooks
    prune.sparsity(model)                                # {"overall", "layers", ...}
    prune.count_macs(model, example_input)               # MACs / params, dense vs masked
    prune.keep_channels(prune.channel_scores(bn, "bn"), 0.5)  # channels a slim net keeps
    prune.remove(model)                                  # bake the zeros in, drop the hooks

    records = prune.IMP(model, train_fn, eval_fn, prune.IMPConfig(rounds=10)).run()
    records = prune.UGS(gnn, task, prune.UGSConfig(rounds=20)).run()   # graph + weights (GNNs)
    kind, records = prune.read_records(run_dir)          # any run kind, one schema

Row-sharded embedding tables (``sparselth.nn.ShardedMaskedEmbedding``, one shard per rank)::

    emb.set_mask(prune.sharded_magnitude(emb, 0.9))     # one threshold over every rank's rows
    prune.save_sharded_ticket(emb, "runs/emb")            # every rank writes its rows
    emb = prune.ShardedTicket.load("runs/emb").to_module()   # on any number of ranks

A finished round of any run becomes a ticket with ``sparselth.ticket.load_round(run_dir, r)``.

Layering: this package imports only torch, numpy, tqdm and the layers below it
(``sparselth._io``, ``utils``, ``sparse``, ``ops``, ``nn``, ``metrics``).
"""

from ..metrics.cost import count_macs
from .channels import CHANNEL_SCORES, channel_scores, keep_channels, kept_count
from .criteria import PRUNABLE_TYPES, magnitude, parse_granularity, random, select
from .imp import IMP, IMPConfig, load_round, run_imp
from .masks import (
    Masks,
    apply,
    from_torch_prune,
    hook_optimizer,
    is_masked,
    masks_of,
    reapply,
    remove,
    sparsity,
    state_without_masks,
    to_torch_prune,
)
from .run import Config, RunDir, read_records, read_round, ticket_parts
from .sharded import sharded_magnitude
from .sharded_ticket import ShardedTicket, save_sharded_ticket
from .strategies import STRATEGIES, get_strategy, register_strategy
from .ugs import UGS, UGSConfig, load_ugs_round

__all__ = [
    "CHANNEL_SCORES",
    "IMP",
    "PRUNABLE_TYPES",
    "STRATEGIES",
    "Config",
    "IMPConfig",
    "RunDir",
    "ShardedTicket",
    "UGS",
    "UGSConfig",
    "Masks",
    "apply",
    "channel_scores",
    "count_macs",
    "from_torch_prune",
    "get_strategy",
    "hook_optimizer",
    "is_masked",
    "keep_channels",
    "kept_count",
    "load_round",
    "load_ugs_round",
    "magnitude",
    "masks_of",
    "parse_granularity",
    "random",
    "read_records",
    "read_round",
    "reapply",
    "register_strategy",
    "remove",
    "run_imp",
    "save_sharded_ticket",
    "select",
    "sharded_magnitude",
    "sparsity",
    "state_without_masks",
    "ticket_parts",
    "to_torch_prune",
]
