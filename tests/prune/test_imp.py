"""IMP driver: per-round sparsity, rewinding (init, late, none), records, checkpoints and
bit-exact resume after a crash."""

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from sparselth import prune
from sparselth.prune import IMP, IMPConfig
from sparselth.prune.run import read_round as load_round


def make_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(10, 24),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(24, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


class Trainer:
    """Few SGD steps with momentum + weight decay; draws from torch, numpy and python RNGs.

    ``entry[r]`` holds the model state at the start of round r; ``crash_at`` raises in the
    middle of that round (after some steps) to simulate a crash."""

    def __init__(self, steps=6, crash_at=None, imp_ref=None):
        self.steps = steps
        self.crash_at = crash_at
        self.entry = {}
        self.calls = []
        self.imp = imp_ref  # set after the IMP is built (for late rewinding)
        self.captured = None

    def train(self, model, r):
        self.calls.append(r)
        self.entry[r] = {k: v.clone() for k, v in prune.state_without_masks(model).items()}
        model.train()
        lr = 0.05 * (1 + 0.1 * random.random())
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
        steps = range(self.steps)
        if self.imp is not None:
            steps = self.imp.progress_bar(steps)
        for it in steps:
            if self.imp is not None and self.imp.capture_rewind_point(model, step=it):
                self.captured = {k: v.clone() for k, v in prune.state_without_masks(model).items()}
            x = torch.randn(32, 10) + torch.from_numpy(np.random.rand(32, 10).astype(np.float32))
            y = x[:, :3].argmax(1)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if r == self.crash_at and it == self.steps // 2:
                raise RuntimeError("simulated crash")

    def evaluate(self, model):
        model.eval()
        g = torch.Generator().manual_seed(123)
        x = torch.randn(64, 10, generator=g)
        with torch.no_grad():
            acc = (model(x).argmax(1) == x[:, :3].argmax(1)).float().mean()
            out2 = float(model(x).pow(2).mean())
        return {"acc": acc, "out2": out2}


def _strip(records):
    return [{k: v for k, v in r.items() if k not in ("wall_time_s", "seconds")} for r in records]


def test_sparsity_each_round_and_rewind_to_init(tmp_path):
    model = make_mlp()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    tr = Trainer()
    cfg = IMPConfig(rounds=4, fraction=0.3, seed=1)
    imp = IMP(
        model, tr, config=cfg, root=tmp_path, progress=False, example_inputs=torch.randn(5, 10)
    )
    records = imp.run()
    assert [r["round"] for r in records] == [0, 1, 2, 3, 4]
    total = 10 * 24 + 24 * 16 + 16 * 3
    prev = None
    for r, rec in enumerate(records):
        remaining = int(total * 0.7**r + 0.5)
        assert rec["total"] == total and rec["zeros"] == total - remaining
        assert rec["sparsity"] == pytest.approx(1 - 0.7**r, abs=1 / total)
        assert set(rec["sparsity_per_layer"]) == {"0.weight", "3.weight", "5.weight"}
        assert 0.0 <= rec["metrics"]["acc"] <= 1.0
        assert rec["macs"] == 5 * (total - rec["zeros"]) and rec["macs_dense"] == 5 * total
        rd = load_round(imp.run_dir, r)
        masks = rd["masks"]
        assert masks.sparsity()["zeros"] == rec["zeros"]
        if prev is not None:  # nested: pruned stays pruned
            for k in masks:
                assert not bool((masks[k] & ~prev[k]).any())
        prev = masks
        # rewinding: round r starts from θ0 exactly, masked
        for k, v in theta0.items():
            expect = v * masks[k] if k in masks else v
            assert torch.equal(tr.entry[r][k], expect), (r, k)
        for k, m in masks.items():  # trained weights keep pruned entries at zero
            assert bool((rd["trained_state"][k][~m] == 0).all())
    # the model ends with the last round's trained weights and masks
    assert prune.masks_of(model) == load_round(imp.run_dir)["masks"]
    for k, v in load_round(imp.run_dir)["trained_state"].items():
        assert torch.equal(prune.state_without_masks(model)[k], v)
    files = sorted(p.name for p in imp.run_dir.iterdir())
    assert "progress.json" in files and "init.safetensors" in files and "round_004" in files
    assert not list(imp.run_dir.rglob("*.pt")) and not list(imp.run_dir.rglob("*.pkl"))
    assert json.loads((imp.run_dir / "records.json").read_text())[-1]["round"] == 4


def test_layer_scope_and_random_strategy(tmp_path):
    cfg = IMPConfig(rounds=2, fraction=0.5, scope="layer", strategy="random", exclude=("@last",))
    records = IMP(make_mlp(), Trainer(steps=2), config=cfg, root=tmp_path, progress=False).run()
    assert set(records[-1]["sparsity_per_layer"]) == {"0.weight", "3.weight"}
    for s in records[2]["sparsity_per_layer"].values():
        assert s == pytest.approx(0.75, abs=0.01)


def test_late_rewinding(tmp_path):
    model = make_mlp()
    tr = Trainer(steps=6)
    imp = IMP(
        model,
        tr,
        config=IMPConfig(rounds=2, rewind="late", rewind_step=3),
        root=tmp_path,
        progress=False,
    )
    tr.imp = imp
    imp.run()
    assert imp.rewind_step == 3 and tr.captured is not None
    for r in (1, 2):
        masks = load_round(imp.run_dir, r)["masks"]
        for k, v in tr.captured.items():
            expect = v * masks[k] if k in masks else v
            assert torch.equal(tr.entry[r][k], expect), (r, k)
    rd = load_round(imp.run_dir, 2)
    assert all(torch.equal(rd["rewind_state"][k], v) for k, v in tr.captured.items())


def test_late_rewinding_needs_a_capture(tmp_path):
    imp = IMP(
        make_mlp(),
        Trainer(steps=2),
        config=IMPConfig(rounds=1, rewind="late"),
        root=tmp_path,
        progress=False,
    )
    with pytest.raises(RuntimeError, match="capture_rewind_point"):
        imp.run()


def test_user_rewind_state_and_no_rewind(tmp_path):
    model = make_mlp()
    other = {k: v + 1.0 for k, v in make_mlp(seed=7).state_dict().items()}
    tr = Trainer(steps=2)
    IMP(
        model,
        tr,
        config=IMPConfig(rounds=1, rewind="late"),
        rewind_state=other,
        root=tmp_path / "a",
        progress=False,
    ).run()
    masks = load_round(next((tmp_path / "a").iterdir()), 1)["masks"]
    assert torch.equal(tr.entry[1]["0.weight"], other["0.weight"] * masks["0.weight"])
    # rewind="none": round r starts from round r-1's trained weights, newly masked
    tr2 = Trainer(steps=2)
    imp = IMP(
        make_mlp(),
        tr2,
        config=IMPConfig(rounds=2, rewind="none"),
        root=tmp_path / "b",
        progress=False,
    )
    imp.run()
    prev = load_round(imp.run_dir, 0)["trained_state"]
    masks = load_round(imp.run_dir, 1)["masks"]
    assert torch.equal(tr2.entry[1]["0.weight"], prev["0.weight"] * masks["0.weight"])


def test_resume_after_crash_is_bit_exact(tmp_path):
    cfg = IMPConfig(rounds=3, fraction=0.25, seed=3)
    ref_model = make_mlp(seed=0)
    ref = IMP(ref_model, Trainer(), config=cfg, root=tmp_path / "ref", progress=False)
    ref_records = ref.run()

    crash = Trainer(crash_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        IMP(make_mlp(seed=0), crash, config=cfg, root=tmp_path / "run", progress=False).run()
    assert crash.calls == [0, 1, 2]
    # a fresh process: different in-memory init and RNG state; both come from disk
    torch.manual_seed(999)
    np.random.seed(999)
    random.seed(999)
    again = Trainer()
    model = make_mlp(seed=42)
    imp = IMP(model, again, config=cfg, root=tmp_path / "run", progress=False)
    records = imp.run()
    assert again.calls == [2, 3]  # finished rounds skipped
    assert _strip(records) == _strip(ref_records)
    for r in range(cfg.rounds + 1):
        a, b = load_round(ref.run_dir, r), load_round(imp.run_dir, r)
        assert a["masks"] == b["masks"]
        for k in a["trained_state"]:
            assert torch.equal(a["trained_state"][k], b["trained_state"][k]), (r, k)
    for k, v in prune.state_without_masks(ref_model).items():
        assert torch.equal(prune.state_without_masks(model)[k], v)
    # running a finished run again does nothing and restores the final model
    third = Trainer()
    model3 = make_mlp(seed=5)
    assert _strip(
        IMP(model3, third, config=cfg, root=tmp_path / "run", progress=False).run()
    ) == _strip(ref_records)
    assert third.calls == []
    assert torch.equal(model3[0].weight, ref_model[0].weight)


def test_extending_rounds_is_bit_exact_and_other_changes_are_refused(tmp_path):
    """A finished run grows with a larger ``rounds`` as if it had been run that long at
    once (random strategy: the RNG stream carries over); other changes are refused with
    the differing fields named."""
    cfg = IMPConfig(rounds=3, fraction=0.3, strategy="random", seed=4)
    ref = IMP(make_mlp(), Trainer(), config=cfg, run_dir=tmp_path / "ref", progress=False).run()
    short = IMP(make_mlp(), Trainer(), config=IMPConfig(rounds=1, fraction=0.3,
                strategy="random", seed=4), run_dir=tmp_path / "run", progress=False).run()
    assert len(short) == 2
    again = Trainer()
    model = make_mlp(seed=9)
    imp = IMP(model, again, config=cfg, run_dir=tmp_path / "run", progress=False)
    assert _strip(imp.run()) == _strip(ref)
    assert again.calls == [2, 3]
    for r in range(4):
        assert load_round(tmp_path / "ref", r)["masks"] == load_round(tmp_path / "run", r)["masks"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["kind"] == "imp" and saved["config"]["rounds"] == 3
    # a shorter rounds reads the first rounds of the folder
    assert len(IMP(make_mlp(), Trainer(), config=IMPConfig(rounds=1, fraction=0.3,
               strategy="random", seed=4), run_dir=tmp_path / "run", progress=False).run()) == 2
    with pytest.raises(ValueError, match=r"different config: fraction: 0\.3 -> 0\.5; "
                                         r"seed: 4 -> 5\. Only 'rounds' may change.*new run "
                                         r"folder"):
        IMP(make_mlp(), Trainer(steps=1), config=IMPConfig(rounds=3, fraction=0.5,
            strategy="random", seed=5), run_dir=tmp_path / "run", progress=False).run()


def test_extending_through_root_finds_the_same_folder(tmp_path):
    """IMP names include ``rounds`` (published hashes), yet a larger ``rounds`` under the same
    ``root`` extends the finished run instead of starting a new folder."""
    short = IMP(make_mlp(), Trainer(steps=1), config=IMPConfig(rounds=1, seed=2), root=tmp_path,
                progress=False)
    short.run()
    trainer = Trainer(steps=1)
    longer = IMP(make_mlp(), trainer, config=IMPConfig(rounds=2, seed=2), root=tmp_path,
                 progress=False)
    assert longer.run_dir == short.run_dir
    assert len(longer.run()) == 3 and trainer.calls == [2]
    other = IMP(make_mlp(), Trainer(steps=1), config=IMPConfig(rounds=2, seed=3), root=tmp_path,
                progress=False)
    assert other.run_dir != short.run_dir


def test_deprecated_load_round_still_works(tmp_path):
    imp = IMP(make_mlp(), Trainer(steps=1), config=IMPConfig(rounds=1), root=tmp_path,
              progress=False)
    imp.run()
    with pytest.warns(DeprecationWarning, match="load_round"):
        rd = prune.load_round(imp.run_dir)
    assert rd["round"] == 1 and isinstance(rd["config"], IMPConfig)
    assert rd["masks"] == load_round(imp.run_dir)["masks"]


def test_config_hash_help_and_validation():
    a, b = IMPConfig(), IMPConfig(rounds=10)
    assert a.run_name() == b.run_name() and a.non_default() == {}
    c = IMPConfig(rounds=3, exclude=["@last"])
    assert c.exclude == ("@last",) and c.run_name() != a.run_name()
    assert IMPConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.run_name() == IMPConfig(exclude=("@last",), rounds=3).run_name()
    text = IMPConfig.help()
    assert "rounds" in text and "rewind" in text and "fraction" in text
    for bad in (
        {"fraction": 1.0},
        {"rewind": "sometimes"},
        {"granularity": "2:4"},
        {"rounds": -1},
        {"scope": "nowhere"},
    ):
        with pytest.raises(ValueError):
            IMPConfig(**bad)
    with pytest.raises(ValueError, match="unknown fields"):
        IMPConfig.from_dict({"round": 3})
    with pytest.raises(ValueError, match="unknown pruning strategy"):
        IMP(make_mlp(), Trainer(), config=IMPConfig(strategy="oracle"))


def test_custom_strategy_and_callables(tmp_path):
    seen = []

    @prune.register_strategy("half_magnitude_layer")
    def strategy(model, masks, fraction, config):
        seen.append(fraction)
        return prune.magnitude(model, masks=masks, fraction=fraction, scope="layer")

    tr = Trainer(steps=1)
    records = prune.run_imp(
        make_mlp(),
        tr.train,
        tr.evaluate,
        IMPConfig(rounds=2, fraction=0.5, strategy="half_magnitude_layer"),
        root=tmp_path,
        progress=True,
    )
    assert len(seen) == 2 and seen[0] == pytest.approx(0.5)
    assert records[2]["sparsity"] == pytest.approx(0.75, abs=0.01)
    del prune.STRATEGIES["half_magnitude_layer"]


def test_revived_weights_are_zeroed_with_a_warning(tmp_path):
    def train(model, r):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(1.0)  # writes into pruned entries too

    imp = IMP(make_mlp(), train, config=IMPConfig(rounds=1), root=tmp_path, progress=False)
    with pytest.warns(RuntimeWarning, match="became nonzero"):
        imp.run()
    rd = load_round(imp.run_dir, 1)
    assert rd["masks"].sparsity()["zeros"] > 0
    for k, m in rd["masks"].items():
        assert bool((rd["trained_state"][k][~m] == 0).all()) and bool(
            (rd["trained_state"][k][m] == 1).all()
        )


def _readme_example(tmp_path, **cfg):
    """The README's example: 90 % global magnitude pruning (biases and the last layer
    excluded), applied, then IMP rounds of 20 %."""
    model = make_mlp()
    masks = prune.magnitude(model, 0.9, scope="global", granularity="element",
                            exclude=["*bias", "@last"])
    prune.apply(model, masks)
    imp = prune.IMP(model, Trainer(), None,
                    prune.IMPConfig(rounds=5, fraction=0.2, rewind="init", **cfg),
                    run_dir=tmp_path / "mlp", progress=False)
    return model, masks, imp


def test_readme_example_prunes_in_every_round(tmp_path):
    model, given, imp = _readme_example(tmp_path)
    records = imp.run()
    total = 10 * 24 + 24 * 16 + 16 * 3
    start = total - sum(int((~m).sum()) for m in given.values())    # the last layer is dense
    assert start < 0.2 * total
    zeros = [rec["zeros"] for rec in records]
    assert zeros[0] == total - start
    assert all(b > a for a, b in zip(zeros, zeros[1:]))               # every round prunes
    for r, rec in enumerate(records):                                 # 20 % of the survivors
        assert total - rec["zeros"] == int(start * 0.8 ** r + 0.5)
    prev = None
    for r in range(6):
        m = load_round(imp.run_dir, r)["masks"]
        for k, g in given.items():                                    # the given masks stay
            assert not bool((m[k] & ~g).any())
        if prev is not None:
            for k in m:
                assert not bool((m[k] & ~prev[k]).any())
        prev = m


def test_start_from_dense_refuses_a_round_that_prunes_nothing(tmp_path):
    _, _, imp = _readme_example(tmp_path, start_from="dense")
    with pytest.raises(ValueError, match=r"^IMP: round 1 would prune nothing: the target of "
                                         r"round 1, .*start_from='dense'"):
        imp.run()
    # from a dense model both settings are the same run
    a = IMP(make_mlp(), Trainer(), config=IMPConfig(rounds=2, fraction=0.3),
            run_dir=tmp_path / "a", progress=False).run()
    b = IMP(make_mlp(), Trainer(), config=IMPConfig(rounds=2, fraction=0.3, start_from="dense"),
            run_dir=tmp_path / "b", progress=False).run()
    assert _strip(a) == _strip(b)
    with pytest.raises(ValueError, match="^IMPConfig.start_from must be 'current' or 'dense'"):
        IMPConfig(start_from="masks")


def test_a_strategy_that_prunes_nothing_is_an_error(tmp_path):
    keep = lambda model, masks, fraction, config: masks.clone()  # noqa: E731
    imp = IMP(make_mlp(), Trainer(), config=IMPConfig(rounds=2), strategy=keep,
              run_dir=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match=r"^IMP: round 1 would prune nothing: strategy .* "
                                         r"removed none"):
        imp.run()
    tiny = nn.Sequential(nn.Linear(2, 2))                          # 4 weights: 0.9 * 4 -> 4
    with pytest.raises(ValueError, match="too small for this fraction"):
        IMP(tiny, lambda m, r: None, lambda m: {"x": 0.0}, IMPConfig(rounds=1, fraction=0.1),
            run_dir=tmp_path / "t", progress=False).run()
    # fraction 0 asks for nothing: no error
    recs = IMP(make_mlp(), Trainer(), config=IMPConfig(rounds=1, fraction=0.0),
               run_dir=tmp_path / "z", progress=False).run()
    assert recs[1]["zeros"] == 0


def test_folders_without_the_start_count_extend_from_round_zero_masks(tmp_path):
    """Progress files written before the start count was saved: it is read from round 0's
    masks, so an extended run continues as an uninterrupted one."""
    _, _, full = _readme_example(tmp_path / "full")
    want = full.run()
    model = make_mlp()
    masks = prune.magnitude(model, 0.9, scope="global", granularity="element",
                            exclude=["*bias", "@last"])
    prune.apply(model, masks)
    cfg = prune.IMPConfig(rounds=2, fraction=0.2, rewind="init")
    IMP(model, Trainer(), None, cfg, run_dir=tmp_path / "old", progress=False).run()
    prog = json.loads((tmp_path / "old" / "progress.json").read_text())
    del prog["start"]
    (tmp_path / "old" / "progress.json").write_text(json.dumps(prog))
    got = IMP(model, Trainer(), None, prune.IMPConfig(rounds=5, fraction=0.2, rewind="init"),
              run_dir=tmp_path / "old", progress=False).run()
    assert [r["zeros"] for r in got] == [r["zeros"] for r in want]
