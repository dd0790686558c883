"""The package's architecture, checked from the source: each layer imports only the layers
below it (function-level imports included), no cycles between subpackages, no oversized
files, and one clock: timing happens only in ``sparselth/utils/timing.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "sparselth"

# Bottom to top. A module may import from its own layer or any layer below.
LAYERS: dict[str, int] = {
    "utils": 0, "_io": 0, "_C": 0,  # _C: the compiled extension (kernels only)
    "sparse": 1,
    "ops": 2, "kernels": 2, "testing": 2,
    "nn": 3,
    "metrics": 4,
    "prune": 5,
    "pretrain": 6,
    "data": 7, "models": 7,
    "train": 8,
    "ticket": 9, "deploy": 9,
    "cli": 10, "__main__": 10, "bench": 11,
}
ROOT_LAYER = 10  # ``import sparselth`` (the root __init__) pulls in everything

MAX_LINES = 700


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(["sparselth", *parts]), path))
    return out


def _component(module: str) -> str | None:
    """The layer component of a dotted ``sparselth...`` name (None for the root package)."""
    parts = module.split(".")
    if parts[0] != "sparselth":
        return None
    return parts[1] if len(parts) > 1 else ""


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")[1:]
    base = PKG.joinpath(*parts) if parts else PKG
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or (
        parts[:1] in (["kernels"], ["bench"], ["_C"]))


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every ``sparselth...`` module imported by ``path`` (anywhere in it), with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("sparselth")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith("sparselth"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub if _is_module(sub) else base, node.lineno))
    return found


def _layer(component: str | None) -> int:
    if component in ("", None):
        return ROOT_LAYER
    return LAYERS[component]


def test_every_component_has_a_layer():
    unknown = sorted({_component(m) for m, _ in _modules()} - set(LAYERS) - {""})
    assert not unknown, f"add these sparselth components to LAYERS: {unknown}"


def test_no_import_goes_upward():
    bad = []
    for module, path in _modules():
        comp = _component(module)
        if comp == "":
            continue  # the root __init__ assembles the public names
        own = _layer(comp)
        for target, line in _imports(module, path):
            tcomp = _component(target)
            if tcomp == comp:
                continue
            if _layer(tcomp) > own:
                bad.append(f"{path.relative_to(REPO)}:{line} ({comp}, layer {own}) imports "
                           f"{target} (layer {_layer(tcomp)})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_cycles_between_components():
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        comp = _component(module)
        if comp == "":
            continue
        for target, _ in _imports(module, path):
            tcomp = _component(target)
            if tcomp not in ("", comp):
                graph.setdefault(comp, set()).add(tcomp)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_file_length(module, path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(REPO)} has {n} lines (at most {MAX_LINES})"


def test_one_clock():
    """Only the measurement protocol reads the clocks; everything else asks it."""
    allowed = {PKG / "utils" / "timing.py"}
    bad = []
    for path in sorted(PKG.rglob("*.py")) + sorted((REPO / "bench").rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "time" and node.attr in (
                        "perf_counter", "perf_counter_ns", "time", "process_time",
                        "monotonic"):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} time.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "time" and any(
                    a.name in ("perf_counter", "time", "process_time", "monotonic")
                    for a in node.names):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} from time import ...")
    assert not bad, "read the clock through sparselth.utils.timing:\n" + "\n".join(bad)
