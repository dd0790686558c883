"""Publishing helpers: JSON-safe numbers, atomic writers, one number format."""

import json
import math

import pytest
import torch

from sparselth.utils import records


def test_finite_replaces_nan_and_inf_recursively():
    assert records.finite({"a": [1.0, math.nan, (math.inf, 2)]}) == {"a": [1.0, None, [None, 2]]}


def test_write_json_is_standard_and_atomic(tmp_path):
    path = records.write_json(tmp_path / "sub" / "r.json",
                              {"x": math.nan, "d": torch.float32, "t": torch.tensor(2.5)})
    data = json.loads(path.read_text())
    assert data == {"x": None, "d": "torch.float32", "t": 2.5}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left behind


def test_write_json_refuses_unknown_objects(tmp_path):
    with pytest.raises(TypeError, match="not JSON serialisable"):
        records.write_json(tmp_path / "r.json", {"x": object()})
    assert not (tmp_path / "r.json").exists()


def test_format_number_and_si():
    assert records.format_number(3.14159) == "3.14"
    assert records.format_number(0.0012345) == "0.00123"
    assert records.format_number(1234.5) == "1234"
    assert records.format_number(None) == "-" and records.format_number(math.nan) == "-"
    assert records.format_number(0.0) == "0" and records.format_number(7) == "7"
    assert records.format_si(1.2e7) == "12M" and records.format_si(950) == "950"
    assert records.format_si(None) == "-" and records.format_si(math.inf) == "-"


def test_markdown_table(tmp_path):
    text = records.markdown_table(["a", "b"], [[1.23456, None], ["x|y", 2]])
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| 1.23 |  |", "| x\\|y | 2 |"]
    path = records.write_markdown(tmp_path / "t.md", text)
    assert path.read_text().endswith("\n")
