"""TU graph-classification loaders: both text layouts on files the tests write, the download
path against a local HTTP server, PyG stand-ins, the loader, and the real files when present."""

from __future__ import annotations

import functools
import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from sparselth._io import sha256_bytes
from sparselth.data import (GraphLoader, as_graph_batch, collate_graphs, download_tu, find_tu,
                            from_pyg, load_tu)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
REAL_DATA = Path(os.environ.get("SPARSELTH_DATA", SHARED))


def _edges(adj):
    ei = adj.to_edge_index()
    return sorted(zip(ei[0].tolist(), ei[1].tolist()))


# --------------------------------------------------------------------------- tiny TU files
# graph 1: nodes 1-3, a path 1-2-3 (both directions); graph 2: nodes 4-5, edge 4->5 only;
# graph 3: node 6 alone. Node labels 5, 7, 5, 9, 7, 5 (three values -> 3 one-hot columns).
TINY = {
    "A": "1, 2\n2, 1\n2, 3\n3, 2\n4, 5\n",
    "graph_indicator": "1\n1\n1\n2\n2\n3\n",
    "graph_labels": "-1\n1\n-1\n",
    "node_labels": "5\n7\n5\n9\n7\n5\n",
    "node_attributes": "0.5, 1.0\n1.5, 2.0\n2.5, 3.0\n3.5, 4.0\n4.5, 5.0\n5.5, 6.0\n",
}


def _write_tu(folder: Path, name="TINY", parts=TINY, crlf=False):
    folder.mkdir(parents=True, exist_ok=True)
    for key, text in parts.items():
        if crlf:
            text = text.replace("\n", "\r\n")
        (folder / f"{name}_{key}.txt").write_text(text, newline="")
    return folder


def test_tu_format_tiny(tmp_path):
    _write_tu(tmp_path / "tu" / "TINY")
    ds = load_tu("TINY", root=tmp_path)
    assert (len(ds), ds.num_classes, ds.num_features, ds.layout) == (3, 2, 3, "tu")
    assert ds.classes == [-1, 1] and ds.y.tolist() == [0, 1, 0]
    assert ds.data.ptr.tolist() == [0, 3, 5, 6]
    torch.testing.assert_close(ds.data.x, torch.tensor(
        [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=torch.float32))
    # "i, j" is an edge from i to j: row j aggregates from i (4 -> 5 becomes entry (4, 3))
    assert _edges(ds.data.adj) == [(0, 1), (1, 0), (1, 2), (2, 1), (4, 3)]
    assert ds.folds is None
    g = ds[1]
    assert g.num_nodes == 2 and _edges(g.adj) == [(1, 0)] and int(g.y) == 1
    ds_attr = load_tu("TINY", root=tmp_path, use_node_attr=True)
    assert ds_attr.num_features == 5
    torch.testing.assert_close(ds_attr.data.x[:, :2], torch.tensor(
        [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0], [3.5, 4.0], [4.5, 5.0], [5.5, 6.0]]))


@pytest.mark.parametrize("sub", ["tu/TINY", "TINY", "TINY/raw", ""])
def test_tu_found_in_every_layout_of_the_root(tmp_path, sub, monkeypatch):
    _write_tu(tmp_path / sub if sub else tmp_path, crlf=True)
    assert find_tu("TINY", tmp_path)[0] == "tu"
    assert len(load_tu("tiny", root=tmp_path)) == 3          # upper-case folder names too
    monkeypatch.setenv("SPARSELTH_DATA", str(tmp_path))
    assert len(load_tu("TINY")) == 3


def test_tu_without_node_labels_gets_a_constant_feature(tmp_path):
    parts = {k: v for k, v in TINY.items() if k not in ("node_labels", "node_attributes")}
    _write_tu(tmp_path, parts=parts)
    ds = load_tu("TINY", root=tmp_path, dtype=torch.float64)
    assert ds.num_features == 1 and bool((ds.data.x == 1).all())
    assert ds.data.x.dtype == torch.float64


def test_tu_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="TINY"):
        load_tu("TINY", root=tmp_path)
    with pytest.raises(ValueError, match="name"):
        load_tu("../etc", root=tmp_path)
    with pytest.raises(ValueError, match="layout"):
        load_tu("TINY", root=tmp_path, layout="csv")
    _write_tu(tmp_path, parts={**TINY, "A": "1, 2\n2, 4\n"})
    with pytest.raises(ValueError, match="two different graphs"):
        load_tu("TINY", root=tmp_path)
    _write_tu(tmp_path, parts={**TINY, "node_labels": "1\n2\n"})
    with pytest.raises(ValueError, match="node_labels"):
        load_tu("TINY", root=tmp_path)
    _write_tu(tmp_path, parts={**TINY, "A": "1, x\n"})
    with pytest.raises(ValueError, match="malformed"):
        load_tu("TINY", root=tmp_path)


# --------------------------------------------------------------------------- tiny GIN files

GIN = """3
3 1
4 1 1
6 2 0 2
4 1 1
2 0
6 1 1
4 0
1 1
9 0
"""


def _write_gin(folder: Path, name="GTINY", text=GIN, folds=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text)
    if folds:
        d = folder / "10fold_idx"
        d.mkdir(exist_ok=True)
        for k in range(1, 11):
            (d / f"train_idx-{k}.txt").write_text(f"{k % 3}\n{(k + 1) % 3}\n")
            (d / f"test_idx-{k}.txt").write_text(f"{(k + 2) % 3}\n")
    return folder


def test_gin_format_tiny_with_folds(tmp_path):
    _write_gin(tmp_path / "gin" / "GTINY")
    ds = load_tu("GTINY", root=tmp_path)
    assert (len(ds), ds.layout, ds.num_classes, ds.classes) == (3, "gin", 2, [0, 1])
    assert ds.y.tolist() == [1, 0, 1]
    assert ds.data.ptr.tolist() == [0, 3, 5, 6]
    # tags 4, 6, 4, 6, 4, 9 -> columns (4, 6, 9)
    assert ds.data.x.argmax(1).tolist() == [0, 1, 0, 1, 0, 2]
    # graph 1: node 0 lists neighbour 1 only (one direction), graph 2 has no edges
    assert _edges(ds.data.adj) == [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4)]
    assert len(ds.folds) == 10
    tr, te = ds.folds[0]
    assert tr.tolist() == [1, 2] and te.tolist() == [0]
    fold = list(GraphLoader(ds, batch_size=8, index=tr))
    assert len(fold) == 1 and fold[0].y.tolist() == ds.y[tr].tolist()


def test_gin_attributes_and_errors(tmp_path):
    _write_gin(tmp_path, "ATTR", "2\n2 0\n1 1 1 0.5 2.0\n2 1 0 1.5 3.0\n1 1\n1 0 4.0 5.0\n",
               folds=False)
    ds = load_tu("ATTR", root=tmp_path, use_node_attr=True)
    assert ds.folds is None and ds.num_features == 4
    torch.testing.assert_close(ds.data.x[:, :2], torch.tensor([[0.5, 2.0], [1.5, 3.0], [4.0, 5.0]]))
    assert load_tu("ATTR", root=tmp_path).num_features == 2
    _write_gin(tmp_path, "BAD", "1\n2 0\n1 1 5\n1 1 0\n", folds=False)
    with pytest.raises(ValueError, match="neighbour"):
        load_tu("BAD", root=tmp_path)
    _write_gin(tmp_path, "SHORT", "2\n2 0\n1 1 1\n", folds=False)
    with pytest.raises(ValueError, match="line"):
        load_tu("SHORT", root=tmp_path)
    _write_gin(tmp_path, "WORDS", "1\n1 a\n1 0\n", folds=False)
    with pytest.raises(ValueError, match="numbers"):
        load_tu("WORDS", root=tmp_path)


def test_both_layouts_auto_prefers_tu_and_layout_picks(tmp_path):
    _write_tu(tmp_path / "tu" / "TINY")
    _write_gin(tmp_path / "gin" / "TINY", name="TINY")
    assert load_tu("TINY", root=tmp_path).layout == "tu"
    assert load_tu("TINY", root=tmp_path, layout="gin").folds is not None


# --------------------------------------------------------------------------- download


def _zip_bytes(name="TINY"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, text in TINY.items():
            zf.writestr(f"{name}/{name}_{key}.txt", text)
        zf.writestr(f"{name}/README.txt", "tiny")
    return buf.getvalue()


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (folder, url)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_with_checksum_then_load(http_root, tmp_path):
    www, url = http_root
    blob = _zip_bytes()
    (www / "TINY.zip").write_bytes(blob)
    data = tmp_path / "data"
    dest = download_tu("TINY", data, url=url, sha256=sha256_bytes(blob))
    assert dest == data / "tu" / "TINY" and (dest / "TINY_A.txt").is_file()
    assert len(load_tu("TINY", root=data)) == 3


def test_download_bad_checksum_writes_nothing(http_root, tmp_path):
    www, url = http_root
    (www / "TINY.zip").write_bytes(_zip_bytes())
    data = tmp_path / "data"
    with pytest.raises(ValueError, match="checksum"):
        download_tu("TINY", data, url=url, sha256="0" * 64)
    assert not (data / "tu").exists()


def test_load_with_download_warns_when_unverified(http_root, tmp_path, monkeypatch):
    www, url = http_root
    (www / "TINY.zip").write_bytes(_zip_bytes())
    data = tmp_path / "data"
    data.mkdir()
    import sparselth.data.tu as tu
    monkeypatch.setattr(tu, "TU_URL", url)          # the default source, read at call time
    with pytest.warns(UserWarning, match="unverified"):
        ds = load_tu("TINY", root=data, download=True)
    assert len(ds) == 3


def test_download_rejects_bad_archives_and_arguments(http_root, tmp_path):
    www, url = http_root
    (www / "JUNK.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="zip"):
        download_tu("JUNK", tmp_path / "d", url=url, sha256=sha256_bytes(b"not a zip"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../EVIL_A.txt", "1, 1\n")
    (www / "EVIL.zip").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="unsafe"):
        download_tu("EVIL", tmp_path / "d", url=url, sha256=sha256_bytes(buf.getvalue()))
    with pytest.raises(ValueError, match="url"):
        download_tu("TINY", tmp_path, url="ftp://x")
    with pytest.raises(ValueError, match="sha256"):
        download_tu("TINY", tmp_path, url=url, sha256="abc")
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- batches, PyG


def test_loader_select_and_collate(tmp_path):
    _write_tu(tmp_path)
    ds = load_tu("TINY", root=tmp_path)
    batches = list(GraphLoader(ds, batch_size=2))
    assert [b.num_graphs for b in batches] == [2, 1]
    assert len(GraphLoader(ds, 2, drop_last=True)) == 1
    b = ds.batch([2, 0, 0])
    assert b.ptr.tolist() == [0, 1, 4, 7] and b.y.tolist() == [0, 0, 0]
    assert _edges(b.adj) == [(1, 2), (2, 1), (2, 3), (3, 2), (4, 5), (5, 4), (5, 6), (6, 5)]
    c = collate_graphs([ds[2], ds[0], ds[0]])
    assert _edges(c.adj) == _edges(b.adj) and torch.equal(c.x, b.x)
    g = torch.Generator().manual_seed(0)
    seen = sorted(int(y) for bb in GraphLoader(ds, 2, shuffle=True, generator=g) for y in bb.y)
    assert seen == sorted(ds.y.tolist())
    dl = torch.utils.data.DataLoader([ds[i] for i in range(3)], batch_size=3,
                                     collate_fn=collate_graphs)
    assert next(iter(dl)).num_graphs == 3
    with pytest.raises(ValueError, match="batch_size"):
        GraphLoader(ds, 0)
    with pytest.raises(TypeError, match="dataset"):
        GraphLoader([1, 2])


class _StandIn:
    """What the code reads of a torch_geometric ``Data``/``Batch``."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_pyg_like_objects_without_torch_geometric():
    data = _StandIn(x=torch.ones(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]),
                    y=torch.tensor([1]))
    b = from_pyg(data)
    assert b.num_graphs == 1 and _edges(b.adj) == [(1, 0), (2, 1)] and b.y.tolist() == [1]
    batch = _StandIn(x=torch.ones(5, 2), edge_index=torch.tensor([[0, 3], [1, 4]]),
                     batch=torch.tensor([0, 0, 0, 1, 1]), y=torch.tensor([0, 1]), num_graphs=2)
    b = as_graph_batch(batch)
    assert b.ptr.tolist() == [0, 3, 5] and _edges(b.adj) == [(1, 0), (4, 3)]
    nx = _StandIn(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=4)
    assert from_pyg(nx).x.shape == (4, 1)
    with pytest.raises(TypeError, match="from_pyg"):
        from_pyg(object())
    with pytest.raises(ValueError, match="batch"):
        from_pyg(_StandIn(x=torch.ones(2, 1), edge_index=torch.zeros(2, 0, dtype=torch.long),
                          batch=torch.tensor([1, 0])))


def test_real_pyg_batch_when_installed():
    pyg = pytest.importorskip("torch_geometric", reason="torch_geometric is not installed "
                              "(optional; the stand-in test covers the conversion)")
    from torch_geometric.data import Batch, Data
    d = Data(x=torch.ones(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), y=torch.tensor([1]))
    b = from_pyg(Batch.from_data_list([d, d]))
    assert b.num_graphs == 2 and b.adj.nnz == 4 and pyg is not None


# --------------------------------------------------------------------------- the real files

REAL = {  # name: (graphs, nodes, stored entries, features, classes, folds)
    "MUTAG": (188, 3371, 7442, 7, 2, None),
    "PROTEINS": (1113, 43471, 162088, 3, 2, None),
    "ENZYMES": (600, 19580, 74564, 3, 6, None),
    "NCI1": (4110, 122747, 265506, 37, 2, 10),
    "DD": (1178, 334925, 1686092, 82, 2, 10),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_datasets(name):
    try:
        find_tu(name, REAL_DATA)
    except FileNotFoundError:
        pytest.skip(f"{name} not found under {REAL_DATA} (set SPARSELTH_DATA to the datasets "
                    f"folder holding tu/ and gin/)")
    ds = load_tu(name, root=REAL_DATA)
    graphs, nodes, nnz, feats, classes, folds = REAL[name]
    assert (len(ds), ds.data.num_nodes, ds.data.adj.nnz, ds.num_features, ds.num_classes) == \
        (graphs, nodes, nnz, feats, classes)
    assert bool((ds.data.x.sum(1) == 1).all())              # one-hot node labels
    if folds:
        assert len(ds.folds) == folds
        for tr, te in ds.folds:
            assert tr.numel() + te.numel() == graphs
            assert torch.unique(torch.cat([tr, te])).numel() == graphs
    b = ds.batch(torch.arange(min(64, graphs)))
    b._validate()
    assert b.adj.nnz == int(ds.data.edge_ptr[min(64, graphs)])
