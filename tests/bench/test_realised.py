"""bench.realised: the cost models behind the promise, the row arithmetic, the protocol and a
quick run of every case into a temporary folder. No timing is asserted."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from torch import nn

from sparselth.bench import common
from sparselth.bench import realised
from sparselth.bench import realised_cases as rc

GROUPS = {"mlp", "convnet", "linear", "conv", "gcn", "lightgcn", "embedding"}


def _args(argv: str):
    return realised.build_parser().parse_args(shlex.split(argv))


# --------------------------------------------------------------------------- cost models


def test_layer_costs_count_kept_macs_and_csr_bytes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        net[0].weight.mul_(torch.rand(4, 6) > 0.5)
        net[2].weight[0].zero_()
    x = torch.randn(5, 6)
    costs = rc.layer_model_costs(net, net, x)
    nnz0 = int((net[0].weight != 0).sum())
    nnz2 = int((net[2].weight != 0).sum())
    t = costs["total"]
    assert t["macs_dense"] == 5 * (24 + 12) and t["macs"] == 5 * (nnz0 + nnz2)
    act0, act2 = (5 * 6 + 5 * 4) * 4, (5 * 4 + 5 * 3) * 4
    assert costs["layers"]["0"]["bytes_dense"] == 24 * 4 + act0 + 4 * 4
    assert costs["layers"]["0"]["bytes"] == (4 + 1) * 4 + nnz0 * 8 + act0 + 4 * 4
    assert costs["layers"]["2"]["bytes"] == (3 + 1) * 4 + nnz2 * 8 + act2


def test_layer_costs_agree_with_count_macs_on_convolutions():
    from sparselth.metrics import count_macs

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(),
                        nn.ConvTranspose2d(5, 2, 3, stride=2, padding=1, output_padding=1))
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.weight.mul_(torch.rand_like(m.weight) > 0.7)
    x = torch.randn(2, 3, 7, 7)
    masks = {f"{i}.weight": net[i].weight != 0 for i in (0, 2)}
    ref = count_macs(net, x, masks)["total"]
    t = rc.layer_model_costs(net, net, x)["total"]
    assert (t["macs_dense"], t["macs"]) == (ref["macs_dense"], ref["macs"])


def test_index_widths_come_from_the_built_module():
    from sparselth.nn import SparseLinear

    lin = nn.Linear(8, 4)
    layer = SparseLinear.from_dense(lin, torch.rand(4, 8) > 0.5, index_dtype=torch.int64)
    assert rc.index_bytes(layer) == (8, 8)
    assert rc.index_bytes(lin) == (4, 4)
    assert rc.csr_bytes(4, 10, 8, 8) == 5 * 8 + 10 * 12


def test_gcn_bytes_of_the_dense_model_by_hand():
    from sparselth import CSR
    from sparselth.models import GCN

    ei = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 0]])
    A = CSR.from_edge_index(ei, num_nodes=4)
    model = GCN(A, 6, 2, hidden=3).eval()
    x = torch.randn(4, 6)
    N, E, H, C = 4, 5, 3, 2
    adj = (N + 1) * 4 + (E + N) * 8
    want = (N * 6 + 6 * H + N * H) * 4 + adj + 2 * N * H * 4
    want += (N * H + H * C + N * C) * 4 + adj + 2 * N * C * 4
    assert rc.gcn_bytes(model, x) == want
    with torch.no_grad():          # a pruned edge and pruned weights cost less
        model.edge_mask[0] = 0
        model.conv1.lin.weight[:, 1:] = 0
    assert rc.gcn_bytes(model, x) < want


# --------------------------------------------------------------------------- rows


def test_roofline_takes_the_bound_that_binds():
    r = realised.roofline(2e9, 1e9, 1.0, copy_gbs=10.0, gemm_gmacs=4.0)
    assert r["bandwidth"] == pytest.approx(0.1) and r["compute"] == pytest.approx(0.5)
    assert r["fraction"] == pytest.approx(0.5)
    gather = realised.roofline(None, 1e9, 0.5, copy_gbs=10.0, gemm_gmacs=4.0)
    assert gather["compute"] is None and gather["fraction"] == pytest.approx(0.2)


def test_targets():
    tgt = [("speedup", ">=", 5.0), ("realised", ">=", 0.6)]
    assert realised._check_target(tgt, 6.0, 0.7) is True
    assert realised._check_target(tgt, 6.0, 0.5) is False
    assert realised._check_target([("speedup", ">", 1.0)], 1.0, None) is False
    assert realised._check_target(None, 1.0, None) is None
    assert realised.target_text(tgt) == "speedup >= 5 and realised >= 0.6"


@pytest.mark.parametrize("sparse_macs", [25, None])
def test_run_case_row_arithmetic(sparse_macs):
    a = torch.randn(64, 64)
    case = rc.Case("toy", "linear", lambda: a @ a, {"slow": lambda: (a @ a) @ a,
                                                      "fast": lambda: a + a},
                   (100, sparse_macs), (400, 100), "toy route", [("speedup", ">", 1.0)])
    row = realised.run_case(case, budget_s=0.01, device=torch.device("cpu"), copy_gbs=10.0,
                            gemm={"gmacs": 1.0})
    assert row["sparse_route"] == "fast"
    assert row["promise_bytes"] == pytest.approx(4.0)
    if sparse_macs is None:
        assert row["promise_basis"] == "bytes" and row["promise_macs"] is None
        assert row["roofline"]["sparse"]["compute"] is None
    else:
        assert row["promise_basis"] == "macs" and row["promise_macs"] == pytest.approx(4.0)
    assert row["realised_savings"] == pytest.approx(row["speedup"] / row["promised_speedup"])
    assert row["speedup"] == row[f"speedup_{row['clock']}"]
    assert set(row["timings"]) == {"dense", "slow", "fast"}
    assert row["kernels"] and row["target_met"] == (row["speedup"] > 1.0)


# --------------------------------------------------------------------------- protocol


def test_published_protocols_cover_every_case_of_the_table():
    for name, argv in realised.PUBLISHED.items():
        args = _args(argv)
        assert realised.output_name(args) == name
        proto = realised.run_protocol(args)
        assert proto["threads"] in (1, 2) and proto["tickets"] == "random"
        groups = {p.group for p in realised.selected(args)}
        if name == "realised-gan-t1":        # the generator cases alone (test_realised_gan)
            assert groups == {"gan"}
            continue
        assert groups == GROUPS
        names = " ".join(proto["cases"])
        for needle in ("mlp-1024-2048-2048-10 b64 90% global", "mlp-784-1024-1024-10 b256",
                       "SparseLinear 1024x1024 b1 90%", "b16 50%", "Conv 3x3 256ch",
                       "ConvTranspose 3x3/2 256ch", "GCN cora 64%/98.8%",
                       "GCN demo csbm-3000-500", "GCN pubmed 59%/82%", "table 95% pruned",
                       "300k x 64, 4096 ids"):
            assert needle in names, needle


def test_other_arguments_are_not_the_published_protocol():
    argv = realised.PUBLISHED["realised-cpu-t1"]
    for extra, key in (("--only conv", "cases"),
                       ("--ugs-runs runs/ugs", "tickets"), ("--e2e-budget 1", "e2e_budget_s")):
        args = _args(f"{argv} {extra}")
        dest = common.result_path(realised.output_name(args), args, realised.PUBLISHED,
                                  parser=realised.build_parser(),
                                  protocol=realised.run_protocol)
        assert dest.folder == common.LOCAL_RESULTS_DIR
        assert any(d.startswith(key) for d in dest.differences), (extra, dest.differences)
    without = argv.replace(" --pubmed", "")
    assert "GCN pubmed 59%/82%" not in realised.run_protocol(_args(without))["cases"]
    dest = common.result_path(realised.output_name(_args(without)), _args(without),
                              realised.PUBLISHED, parser=realised.build_parser(),
                              protocol=realised.run_protocol)
    assert dest.folder == common.LOCAL_RESULTS_DIR


def test_retired_results_stay_committed_and_unpublished():
    for name in realised.RETIRED:
        assert name not in realised.PUBLISHED
        assert (common.RESULTS_DIR / f"{name}.json").is_file()


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_quick_run_measures_every_group(tmp_path):
    report = realised.main(["--quick", "--threads", "1", "--budget", "0.005", "--e2e-budget",
                            "0.01", "--out", str(tmp_path), "--tag", "t", "--no-progress"])
    assert report["failed"] == []
    data = json.loads((tmp_path / "realised-t.json").read_text())
    assert (tmp_path / "realised-t.png").is_file()
    assert data["copy_bandwidth_gbs"] > 0 and data["gemm"]["gmacs"] > 0
    assert data["copy"]["gbs"] > 0 and data["copy"]["clock"] == "cpu"
    assert data["machine"]["cpu"] and data["clock"] == "cpu"
    assert {r["group"] for r in data["results"]} == GROUPS
    for r in data["results"]:
        assert r["speedup_cpu"] > 0 and r["speedup_wall"] > 0
        assert r["promise_bytes"] > 0
        assert (r["promise_macs"] is None) == (r["group"] == "embedding")
        assert r["roofline"]["dense"]["fraction"] > 0
        assert r["roofline"]["sparse"]["fraction"] > 0
        assert r["kernels"]
    text = (tmp_path / "realised-t.md").read_text()
    assert "| promise (MACs) | promise (bytes) |" in text
    assert "Protocol: not the published protocol" in text


@pytest.mark.slow
def test_ugs_tickets_come_from_the_newest_run_folder(tmp_path):
    from sparselth.bench import ugs

    ugs.main(["--dataset", "csbm", "--csbm-nodes", "200", "--rounds", "1", "--epochs", "2",
              "--hidden", "8", "--threads", "1", "--no-latency", "--out", str(tmp_path),
              "--runs", str(tmp_path / "runs"), "--no-progress"])
    ticket = rc._ugs_ticket(tmp_path / "runs", "csbm", 1)
    assert {"edge_mask", "conv1.lin.weight", "conv2.lin.weight"} <= set(ticket.masks)
    assert 0 < float(ticket.masks["edge_mask"].float().mean()) < 1
    with pytest.raises(FileNotFoundError, match="no UGS run folder"):
        rc._ugs_ticket(tmp_path / "runs", "cora", 1)
