"""The package layout the docs describe: shallow imports, and data flowing one way."""

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "receiver"


def _imports() -> dict[str, set[str]]:
    """Each module of ``receiver`` and the ``receiver`` modules it imports (read with ast)."""
    graph = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("receiver"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("receiver")}
        graph[name] = found - {name}
    return graph


GRAPH = _imports()


@cache
def level(module: str) -> int:
    return 1 + max((level(dep) for dep in GRAPH[module] if dep in GRAPH), default=0)


def test_receiver_has_at_most_five_import_levels():
    deepest = max(GRAPH, key=level)
    assert level(deepest) <= 5, f"{deepest} is {level(deepest)} levels deep"


def test_every_import_names_a_module_that_exists():
    for module, deps in GRAPH.items():
        assert deps <= set(GRAPH), f"{module} imports {deps - set(GRAPH)}"


def _reaches(module: str, prefixes: tuple[str, ...]) -> set[str]:
    return {dep for dep in GRAPH[module] if dep.startswith(prefixes)}


def test_sources_and_stores_reach_back_to_nothing_above_them():
    upper = ("receiver.edge", "receiver.dispatch", "receiver.runtimes", "receiver.cli")
    for module in GRAPH:
        if module.startswith(("receiver.sources", "receiver.stores", "receiver.settings")):
            assert not _reaches(module, upper), module


def test_the_runtimes_do_not_import_each_other_and_nothing_imports_the_cli():
    assert not _reaches("receiver.runtimes.modal", ("receiver.runtimes.local",))
    assert not _reaches("receiver.runtimes.modal", ("receiver.runtimes.worker",))
    assert not _reaches("receiver.runtimes.modal", ("receiver.stores.sqlite",))
    assert not _reaches("receiver.runtimes.local", ("receiver.runtimes.modal",))
    for module in GRAPH:
        if not module.startswith("receiver.cli"):
            assert not _reaches(module, ("receiver.cli",)), module


def test_the_edge_depends_on_the_store_protocol_only():
    assert not _reaches("receiver.edge", ("receiver.stores.", "receiver.runtimes"))
