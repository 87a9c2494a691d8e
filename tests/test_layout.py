"""The package's import graph: no cycles (imports inside functions count too), the leaf
modules stay leaves, and the package never imports the repository's experiments. The scripts
are thin: importing one does no work."""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fewshot_mann"
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def import_statements() -> dict[Path, list[ast.Import | ast.ImportFrom]]:
    """Each package file's import statements, anywhere in its source (parsed once)."""
    return {path: [node for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, ast.Import | ast.ImportFrom)]
            for path in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, anywhere in its source."""
    files = {module_name(p): p for p in import_statements()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in import_statements()[path]:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package[:len(package) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_leaves_stay_leaves():
    graph = import_graph()
    assert graph["fewshot_mann.errors"] == set()
    assert graph["fewshot_mann.runtime"] == {"fewshot_mann.errors"}
    assert graph["fewshot_mann.config"] <= {"fewshot_mann.errors"}


def test_the_package_does_not_import_experiments():
    for path, statements in import_statements().items():
        for node in statements:
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n.split(".")[0] in ("experiments", "scripts") for n in names), path


# not watched: git's own files, the environment, and runs/, where trainings started in the
# background by a developer write while the tests run
UNWATCHED = {".git", ".venv", "runs"}


def _snapshot(root: Path) -> dict[str, int]:
    """Every file below root (but UNWATCHED, never entered) and its modification time."""
    files = {}
    for folder, subfolders, names in os.walk(root):
        if folder == str(root):
            subfolders[:] = [d for d in subfolders if d not in UNWATCHED]
        for name in names:
            path = os.path.join(folder, name)
            files[path] = os.stat(path, follow_symlinks=False).st_mtime_ns
    return files


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_a_script_does_nothing_when_imported(script, tmp_path, monkeypatch):
    import torch

    import fewshot_mann.data
    import fewshot_mann.data.omniglot
    import fewshot_mann.evaluation.heldout
    import fewshot_mann.training.run
    import fewshot_mann.training.trainer

    def working(*args, **kwargs):
        raise AssertionError(f"{script.name} works when imported")

    # the ways into real work (no wall-clock bound: a loaded machine makes that flaky)
    for owner, name in ((torch.Tensor, "backward"), (fewshot_mann.training.run, "build_run"),
                        (fewshot_mann.training.trainer, "build_run"),
                        (fewshot_mann.data, "load_dataset"),
                        (fewshot_mann.data.omniglot, "load_omniglot"),
                        (fewshot_mann.evaluation.heldout, "evaluate_checkpoint")):
        monkeypatch.setattr(owner, name, working)
    monkeypatch.chdir(tmp_path)  # a script that writes to the working folder would write here
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])  # parsing at import would exit
    before = _snapshot(REPO)
    spec = importlib.util.spec_from_file_location(f"script_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
    assert list(tmp_path.iterdir()) == [] and _snapshot(REPO) == before


def test_the_public_api_is_importable_from_the_top_and_light():
    """Every exported name resolves; importing the package alone loads no torch (the CLI's
    --help and the config stay quick)."""
    import fewshot_mann

    for name in fewshot_mann.__all__:
        assert getattr(fewshot_mann, name) is not None
    code = ("import sys, fewshot_mann, fewshot_mann.config, fewshot_mann.cli; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_memories_and_backends_are_named_once():
    from fewshot_mann.config import BACKENDS, MEMORY_NAMES
    from fewshot_mann.memory import MEMORIES

    assert tuple(MEMORIES) == MEMORY_NAMES
    assert all(hasattr(variant, backend) for variant in MEMORIES.values() for backend in BACKENDS)
