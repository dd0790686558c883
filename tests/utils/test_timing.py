"""The measurement protocol: samples of both clocks, interleaving, statistics, conditions."""

import math

import pytest
import torch

from sparselth.utils import timing


def _spin(n):
    def fn():
        s = 0
        for i in range(n):
            s += i
        return s
    return fn


def test_timing_statistics_on_known_samples():
    t = timing.Timing("x", wall=[4.0, 1.0, 3.0, 2.0, 5.0], cpu=[1.0, 1.0, 2.0, 2.0, 2.0])
    assert t.median == 3.0 and t.min == 1.0
    assert t.q1 == 2.0 and t.q3 == 4.0 and t.iqr == 2.0
    assert t.cpu_median == 2.0
    s = t.summary()
    assert s["ms"] == 3000.0 and s["min_ms"] == 1000.0 and s["cpu_ms"] == 2000.0
    assert s["iqr_ms"] == 2000.0 and s["reps"] == 5
    assert t.times is t.wall
    with pytest.raises(ValueError, match="clock"):
        t.samples("gpu")


def test_empty_timing_is_nan():
    t = timing.Timing("x")
    assert math.isnan(t.median) and math.isnan(t.summary()["cpu_ms"])


def test_time_interleaved_orders_contenders_and_records_both_clocks():
    out = timing.time_interleaved({"fast": _spin(200), "slow": _spin(4000)}, budget_s=0.05,
                                  min_reps=5, max_reps=9)
    assert set(out) == {"fast", "slow"}
    for t in out.values():
        assert 5 <= t.reps <= 9 and len(t.cpu) == t.reps
        assert all(w > 0 for w in t.wall) and all(c >= 0 for c in t.cpu)


def test_interleaving_calls_in_rounds():
    order = []
    timing.time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                            warmup=1, max_extra_warmup=0, budget_s=0.0, min_reps=3, max_reps=3,
                            target_sample_s=0.0)
    timed = order[2:]  # one warm-up call each first
    assert timed == ["a", "b"] * 3


def test_rewarm_makes_one_untimed_call_per_sample():
    calls = []
    out = timing.time_interleaved({"a": lambda: calls.append(1)}, warmup=1, max_extra_warmup=0,
                                  budget_s=0.0, min_reps=4, max_reps=4, target_sample_s=0.0,
                                  rewarm=True)
    assert out["a"].reps == 4 and len(calls) == 1 + 4 * 2


def test_time_interleaved_rejects_nothing_to_time():
    with pytest.raises(ValueError, match="fns"):
        timing.time_interleaved({})


def test_measure_records_conditions_and_headline_clock():
    torch_threads = torch.get_num_threads()
    m = timing.measure({"a": _spin(300), "b": _spin(3000)}, budget_s=0.05)
    assert m.threads == torch_threads
    assert m.clock == ("cpu" if torch_threads == 1 else "wall")
    assert m.speedup("b", "a") == pytest.approx(
        m["b"].median_of(m.clock) / m["a"].median_of(m.clock))
    assert m.ms("a") > 0 and m.ms("a", clock="wall") > 0
    d = m.to_dict()
    assert d["clock"] == m.clock and set(d["timings"]) == {"a", "b"}
    assert timing.measure({"a": _spin(10)}, clock="wall", budget_s=0.01).clock == "wall"
    with pytest.raises(ValueError, match="clock"):
        timing.measure({"a": _spin(10)}, clock="gpu")


def test_headline_clock():
    assert timing.headline_clock(1) == "cpu"
    assert timing.headline_clock(2) == "wall"


def test_stopwatch_and_now():
    sw = timing.stopwatch()
    t0 = timing.now()
    _spin(20000)()
    assert sw() > 0 and timing.now() > t0


def test_machine_facts():
    info = timing.machine_info()
    for key in ("cpu", "usable_cores", "torch_threads", "torch", "date_utc", "git_commit"):
        assert info[key] is not None
    assert isinstance(timing.cpu_model(), str) and timing.cpu_model()
    assert timing.busy_note({"usable_cores": 2, "loadavg_start": 0.1, "loadavg_end": 0.2}) is None
    assert "busy" in timing.busy_note({"usable_cores": 2, "loadavg_start": 3.0})


def test_copy_bandwidth_is_positive():
    assert timing.copy_bandwidth_gbs(size_mb=8, reps=3) > 0
