"""Masks on any model, pruning criteria, MAC accounting and the IMP driver.

Quick tour::

    import sparselth.prune as prune

    masks = prune.magnitude(model, 0.8)                  # 80% global unstructured
    masks = prune.magnitude(model, 0.5, scope="layer", granularity="channel",
                            exclude=["@first", "@last"])
    masks = prune.random(model, 0.8, seed=0)             # random baseline
    prune.apply(model, masks)                            # buffers <attr>_mask + grad hooks
    prune.sparsity(model)                                # {"overall", "layers", ...}
    prune.count_macs(model, example_input)               # MACs / params, dense vs masked
    prune.remove(model)                                  # bake the zeros in, drop the hooks

    records = prune.IMP(model, train_fn, eval_fn, prune.IMPConfig(rounds=10)).run()
    records = prune.UGS(gnn, task, prune.UGSConfig(rounds=20)).run()   # graph + weights (GNNs)

Layering: this package imports only torch, numpy, tqdm and ``sparselth._io``.
"""

from .accounting import count_macs
from .criteria import PRUNABLE_TYPES, magnitude, parse_granularity, random, select
from .imp import (
    IMP,
    STRATEGIES,
    IMPConfig,
    get_strategy,
    load_round,
    register_strategy,
    run_imp,
)
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
from .ugs import UGS, UGSConfig, load_ugs_round

__all__ = [
    "IMP",
    "PRUNABLE_TYPES",
    "STRATEGIES",
    "IMPConfig",
    "UGS",
    "UGSConfig",
    "Masks",
    "apply",
    "count_macs",
    "from_torch_prune",
    "get_strategy",
    "hook_optimizer",
    "is_masked",
    "load_round",
    "load_ugs_round",
    "magnitude",
    "masks_of",
    "parse_granularity",
    "random",
    "reapply",
    "register_strategy",
    "remove",
    "run_imp",
    "select",
    "sparsity",
    "state_without_masks",
    "to_torch_prune",
]
