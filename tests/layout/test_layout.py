"""The package layout of STYLE.md §1, checked on the source: imports point one way, no module takes part in an import
cycle (function-level imports included), and an installed wheel holds exactly the three packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sae_analysis", "trainers", "figures", "paper")
FORBIDDEN = {
    "sae_analysis": ("trainers", "figures", "paper", "matplotlib", "seaborn"),
    "figures": ("torch", "sae_analysis", "trainers", "paper"),
    "trainers": ("figures", "paper"),
    "paper": ("trainers",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its body (absolute names; relative imports resolved)."""
    tree, me = ast.parse(path.read_text(encoding="utf-8")), module_name(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = me.split(".")[: len(me.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + ([base] if base else []))
            found.update(base if a.name == "*" else f"{base}.{a.name}" for a in node.names)
    return found


def resolve(name: str, modules: set[str]) -> str | None:
    """The module an imported name lives in: itself if it is a module, else the longest module prefix
    (`from trainers import checkpoint` is the module trainers.checkpoint; `from sae_analysis import SAE` is the package)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def project_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")] + [ROOT / "paper_figures.py"]
    modules = {module_name(p): p for p in files}
    graph = {name: {resolve(m, set(modules)) for m in imports_of(p)} for name, p in modules.items()}
    return {name: {m for m in deps if m is not None and m != name} for name, deps in graph.items()}


def test_imports_point_one_way():
    bad = [(mod, imp) for mod, path in ((module_name(p), p) for pkg in FORBIDDEN for p in (ROOT / pkg).rglob("*.py"))
           for imp in imports_of(path) if imp.split(".")[0] in FORBIDDEN[mod.split(".")[0]]]
    assert not bad, f"imports against the layout (STYLE.md §1): {bad}"


def test_no_import_cycles():
    graph = project_graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_detector_sees_a_planted_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "figures"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from figures.b import g\n")
    (pkg / "b.py").write_text("from figures import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGES", ("figures",))
    (tmp_path / "paper_figures.py").write_text("")
    with pytest.raises(AssertionError, match="figures.a -> figures.b -> figures.a|figures.b -> figures.a -> figures.b"):
        test_no_import_cycles()


def test_wheel_installs_exactly_the_three_packages():
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cfg["tool"]["setuptools"]["packages"]["find"]["include"] == ["sae_analysis*", "trainers*", "figures*"]
    assert cfg["project"]["scripts"] == {"sae-analysis": "sae_analysis.cli:main"}
    assert cfg["project"]["entry-points"]["sae_analysis.commands"] == {"train": "trainers.cli", "demo": "trainers.demo.cli"}
