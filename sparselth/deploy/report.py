"""What ``sparselth.compile`` did and measured: one row per layer, totals, end to end.

``str(report)`` is an aligned table (numbers through :func:`sparselth.utils.records.format_number`
and :func:`~sparselth.utils.records.format_si`); ``to_dict``/``from_dict`` round-trip through
JSON (format ``sparselth.compile_report``); ``save`` writes it atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..utils.records import finite, format_number, format_si, write_json

__all__ = ["CompileError", "CompileReport", "LayerReport", "REPORT_FORMAT", "REPORT_VERSION"]

REPORT_FORMAT = "sparselth.compile_report"
REPORT_VERSION = 3  # 2: wall and CPU latencies, the noise margin, the headline clock
#                     3: graph layers as rows, ``part_of`` on the layers inside them


class CompileError(RuntimeError):
    """The compiled model's output differs from the masked dense model's output."""


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass
class LayerReport:
    """One layer of a compiled model.

    ``latency_ms`` holds each route's median time per call on the headline clock
    (``CompileReport.meta["clock"]``), ``latency_iqr_ms`` its quartiles, ``latency_wall_ms``
    / ``latency_cpu_ms`` the medians of both clocks. ``noise_ms`` is the measured noise
    between dense and the chosen route (or, where dense stayed, the fastest other route):
    half the sum of their interquartile ranges. A route replaces dense only when it is faster
    by more than that noise and by ``min_gain``; ``speedup`` is dense's median over the chosen
    route's, ``promised_speedup`` the ratio of MACs, ``realised`` their quotient.

    A graph layer (``GCNConv``, ...) is one row whose MACs cover its transform and aggregation
    and whose routes are its orders (``A(XW)``, ``(AX)W``); the ``lin`` inside it keeps its
    own row with ``part_of`` naming the graph layer, left out of the totals (its MACs and
    time are the graph layer's). That row shows the transform as the layer runs it, also
    where the layer never calls ``lin`` as a module (CSR features: ``spmm(x, W^T)``): its
    MACs (``macs_dense`` with every weight on the same features) and its time, dense against
    the compiled ``lin``. ``macs_executed`` is set where the compiled layer executes
    fewer MACs than the ticket counts (hidden channels that no kept weight of the next layer
    reads are skipped); the promise stays the ticket's count.
    """

    name: str
    type: str
    shape: list[int]
    sparsity: float
    macs_dense: int
    macs_ticket: int
    bytes_dense: int
    bytes_stored: int
    latency_ms: dict[str, float]
    route: str
    impl: str
    speedup: float | None
    promised_speedup: float | None
    latency_iqr_ms: dict[str, list[float]] = field(default_factory=dict)
    variants_ms: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    forced: bool = False
    note: str = ""
    latency_wall_ms: dict[str, float] = field(default_factory=dict)
    latency_cpu_ms: dict[str, float] = field(default_factory=dict)
    noise_ms: float | None = None
    part_of: str = ""
    macs_executed: int | None = None

    @classmethod
    def for_layer(cls, name: str, module: Any, keep_fraction: float, macs_dense: int,
                  macs_ticket: int, state_bytes: int) -> LayerReport:
        """A row for a layer that still runs dense (routes fill in the rest)."""
        return cls(name=name, type=type(module).__name__, shape=list(module.weight.shape),
                   sparsity=1.0 - keep_fraction, macs_dense=macs_dense, macs_ticket=macs_ticket,
                   bytes_dense=state_bytes, bytes_stored=state_bytes, latency_ms={},
                   route="dense", impl=type(module).__name__, speedup=None,
                   promised_speedup=_ratio(macs_dense, macs_ticket))

    @property
    def realised(self) -> float | None:
        """Measured speed-up / the speed-up the MACs promise."""
        return _ratio(self.speedup, self.promised_speedup)


def layer_totals(layers: Sequence[LayerReport]) -> dict[str, Any]:
    """Sums over layers (latencies: per-layer medians on the headline clock); a row
    ``part_of`` another is counted in that one."""
    layers = [r for r in layers if not r.part_of]
    lat_d = sum(r.latency_ms.get("dense", 0.0) for r in layers)
    lat_c = sum(r.latency_ms.get(r.route, 0.0) for r in layers)
    totals = {key: sum(getattr(r, key) for r in layers)
              for key in ("macs_dense", "macs_ticket", "bytes_dense", "bytes_stored")}
    totals.update(latency_dense_ms=lat_d, latency_compiled_ms=lat_c,
                  speedup=lat_d / lat_c if lat_c > 0 else None,
                  promised_speedup=_ratio(totals["macs_dense"], totals["macs_ticket"]))
    return totals


@dataclass
class CompileReport:
    """What ``compile`` did and what it measured.

    Attributes:
        layers: one :class:`LayerReport` per prunable layer (module order), then one per
            masked embedding table.
        totals: sums over layers: ``macs_dense``, ``macs_ticket``, ``bytes_dense``,
            ``bytes_stored``, ``latency_dense_ms``, ``latency_compiled_ms`` (per-layer medians).
        end_to_end: ``dense_ms``, ``compiled_ms`` (medians on the headline clock ``clock``,
            with quartiles ``*_iqr_ms``; both clocks as ``*_wall_ms``/``*_cpu_ms`` with
            ``speedup_wall``/``speedup_cpu``), ``speedup``, ``promised_speedup`` (MACs dense /
            MACs ticket over the whole model), ``realised_savings`` (``speedup /
            promised_speedup``), ``max_rel_error``; from the fastest samples ``dense_min_ms``,
            ``compiled_min_ms``, ``speedup_best``, ``realised_savings_best``; ``layout``,
            ``layout_ms``, ``contiguous_outputs``: sparse layers may return a transposed view
            (free for a following sparse layer, slow for a dense one), so the variants "as
            returned", "contiguous before dense layers" and "all contiguous" are timed end to
            end and the fastest is kept.
        memory: ``method`` and ``dense_bytes``/``compiled_bytes`` (CUDA: peak allocated bytes
            of one forward pass; CPU: parameter + buffer bytes, with a note saying so).
        meta: device, dtype, backend, threads, the headline ``clock``, versions, input shapes,
            ticket sparsity, tolerance.
    """

    layers: list[LayerReport]
    totals: dict[str, Any]
    end_to_end: dict[str, Any]
    memory: dict[str, Any]
    meta: dict[str, Any]

    def layer(self, name: str) -> LayerReport:
        for rec in self.layers:
            if rec.name == name:
                return rec
        raise KeyError(name)

    @property
    def routes(self) -> dict[str, str]:
        """``{layer name: chosen route}``."""
        return {rec.name: rec.route for rec in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return finite({
            "format": REPORT_FORMAT,
            "format_version": REPORT_VERSION,
            "layers": [asdict(rec) for rec in self.layers],
            "totals": dict(self.totals),
            "end_to_end": dict(self.end_to_end),
            "memory": dict(self.memory),
            "meta": dict(self.meta),
        })

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CompileReport:
        if d.get("format") != REPORT_FORMAT:
            raise ValueError(f"not a compile report: format is {d.get('format')!r}")
        if int(d.get("format_version", 0)) > REPORT_VERSION:
            raise ValueError(f"compile report format {d.get('format_version')} is newer than "
                             f"this sparselth reads ({REPORT_VERSION})")
        layers = [LayerReport(**rec) for rec in d["layers"]]
        return cls(layers, dict(d["totals"]), dict(d["end_to_end"]), dict(d["memory"]),
                   dict(d["meta"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def save(self, path: Any) -> Path:
        """Write the report as JSON to ``path`` atomically; returns the path."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Any) -> CompileReport:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __str__(self) -> str:
        return "\n".join(self._table() + [""] + self._summary())

    __repr__ = __str__

    def _table(self) -> list[str]:
        routes: list[str] = ["dense"]
        for rec in self.layers:
            routes += [r for r in rec.latency_ms if r not in routes]
        headers = (["layer", "type", "shape", "sparsity", "MACs dense", "MACs ticket",
                    "bytes dense", "bytes stored"] + [f"{r} ms" for r in routes]
                   + ["route", "speed-up", "promised", "realised"])
        rows = []
        for rec in self.layers:
            name = rec.name + (f" (in {rec.part_of})" if rec.part_of else "")
            rows.append([name, rec.type, "x".join(map(str, rec.shape)), f"{rec.sparsity:.3f}",
                         format_si(rec.macs_dense), format_si(rec.macs_ticket),
                         format_si(rec.bytes_dense), format_si(rec.bytes_stored)]
                        + [format_number(rec.latency_ms.get(r)) for r in routes]
                        + [rec.route + ("*" if rec.forced else ""), format_number(rec.speedup),
                           format_number(rec.promised_speedup), format_number(rec.realised)])
        t = self.totals
        rows.append(["total", "", "", f"{self.meta.get('ticket_sparsity', 0.0):.3f}",
                     format_si(t["macs_dense"]), format_si(t["macs_ticket"]),
                     format_si(t["bytes_dense"]), format_si(t["bytes_stored"])]
                    + [format_number(t["latency_dense_ms"]) if r == "dense" else "" for r in routes]
                    + [format_number(t["latency_compiled_ms"]) + " ms",
                       format_number(t.get("speedup")), format_number(t.get("promised_speedup")),
                       format_number(_ratio(t.get("speedup"), t.get("promised_speedup")))])
        widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in
                  enumerate(headers)]
        left = {0, 1, len(headers) - 4}

        def line(cells: Sequence[Any]) -> str:
            return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "  ".join("-" * w for w in widths)
        return [line(headers), rule, *map(line, rows[:-1]), rule, line(rows[-1])]

    def _summary(self) -> list[str]:
        e, m, meta = self.end_to_end, self.memory, self.meta
        clock = e.get("clock") or meta.get("clock") or "wall"
        note = f"  [{m['note']}]" if m.get("note") else ""
        forced = "; * = route forced by routes=" if any(r.forced for r in self.layers) else ""
        return [
            f"end to end on {meta.get('device')} ({meta.get('dtype')}, backend "
            f"{meta.get('backend')}, threads: {meta.get('threads')}): dense "
            f"{format_number(e.get('dense_ms'))} ms, compiled "
            f"{format_number(e.get('compiled_ms'))} ms (median {clock} time per call); "
            f"speed-up {format_number(e.get('speedup'))}x "
            f"measured, {format_number(e.get('promised_speedup'))}x promised by the MACs, "
            f"realised savings {format_number(e.get('realised_savings'))}",
            f"clocks: the headline ratio uses {clock} time; wall "
            f"{format_number(e.get('speedup_wall'))}x, CPU {format_number(e.get('speedup_cpu'))}x",
            f"memory ({m.get('method')}): dense {format_si(m.get('dense_bytes'))}B, compiled "
            f"{format_si(m.get('compiled_bytes'))}B{note}",
            *([f"executed MACs: {format_si(e['macs_skipped'])} of the ticket's MACs skipped "
               f"(hidden channels no kept weight reads); by executed MACs the promise is "
               f"{format_number(e.get('promised_speedup_executed'))}x, realised "
               f"{format_number(e.get('realised_savings_executed'))}"]
              if e.get("macs_skipped") else []),
            f"verified: max relative error {format_number(e.get('max_rel_error'))} "
            f"(tolerance {format_number(meta.get('tolerance'))}){forced}",
        ]
