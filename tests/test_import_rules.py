"""Which part of the package may import which (docs/architecture.md), read from the source: an AST walk over every
module, imports inside functions included (`if TYPE_CHECKING:` blocks left out: they never run)."""

import ast
from pathlib import Path

import pytest

import multitask_st
from multitask_st.model_folder import PAYLOAD_FILES


PACKAGE_DIR = Path(multitask_st.__file__).parent
PACKAGE = "multitask_st"

# part -> the parts it may import (each part may import itself). The entry points (`cli`, `__main__`) and the package
# root (lazy names) may import anything.
ALLOWED = {
    "payload": set(),  # relative imports between payload files only (checked apart)
    "model_folder": set(),  # the standard library alone: the ONNX runtime (no torch) reads it too
    "data": {"payload"},
    "training": {"payload", "model_folder", "data"},
    "export": {"payload", "model_folder", "data"},
    "app": {"payload", "model_folder", "data"},
    # bulk inference reads corpora like the data files and runs the PyTorch model or the ONNX runtime
    "bulk": {"payload", "model_folder", "data", "export"},
    # the card names the export doors (`plain_export_plan`); the Space ships the app
    "sharing": {"payload", "model_folder", "export", "app"},
}


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _part(module: str) -> str:
    rest = module.removeprefix(PACKAGE).lstrip(".")
    if not rest:
        return "root"
    top = rest.split(".")[0]
    if f"{top}.py" in PAYLOAD_FILES:
        return "payload"
    return "cli" if top == "__main__" else top


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (child for branch in node.orelse for child in [branch, *_import_nodes(branch)])
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(node)


def _imports(module: str) -> list[tuple[str, bool]]:
    """`(imported package module, relative?)` for each import of the package in `module`: `from . import x` names
    the submodule `x` when there is one, else the package it is taken from."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, False) for alias in node.names if alias.name.split(".")[0] == PACKAGE]
            continue
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        if target.split(".")[0] != PACKAGE:
            continue
        names = [f"{target}.{alias.name}" for alias in node.names]
        found += [(name if name in MODULES else target, bool(node.level)) for name in names]
    return found


GRAPH = {module: sorted({name for name, _ in _imports(module) if name != module}) for module in MODULES}


def test_every_module_is_read():
    assert {"multitask_st.model_folder", "multitask_st.training.trainer", "multitask_st.data.corpora"} <= set(GRAPH)
    assert "multitask_st.data.corpora" in GRAPH["multitask_st.data.task_datasets"]
    assert _imports("multitask_st.sharing.model_dir")  # relative imports resolved


@pytest.mark.parametrize("module", [name for name in MODULES if _part(name) not in ("root", "cli")])
def test_each_part_imports_only_what_it_may(module):
    part = _part(module)
    imported = {_part(name) for name in GRAPH[module]} - {part}
    assert imported <= ALLOWED[part], f"{module} ({part}) imports {sorted(imported - ALLOWED[part])}"


def test_nothing_imports_the_package_root():
    # The root only names things lazily; a part that imports it would load every part it names.
    importers = [module for module, imported in GRAPH.items() if PACKAGE in imported and _part(module) != "cli"]
    assert importers == []


def test_payload_files_import_only_each_other_and_relatively():
    for module in (name for name in MODULES if _part(name) == "payload"):
        for name, relative in _imports(module):
            assert _part(name) == "payload" and relative, f"{module} imports {name}"


def _circles(modules: set[str]) -> list[list[str]]:
    """Each import circle among `modules` (as the path around it), found by depth-first search."""
    circles, done = [], set()

    def visit(module: str, path: list[str]):
        if module in path:
            circles.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        for name in GRAPH[module]:
            if name in modules:
                visit(name, [*path, module])
        done.add(module)

    for module in sorted(modules):
        visit(module, [])
    return circles


def test_no_import_circle_outside_the_payload():
    assert _circles({module for module in MODULES if _part(module) not in ("root", "payload")}) == []


def test_no_import_circle_in_the_payload():
    assert _circles({module for module in MODULES if _part(module) == "payload"}) == []


def test_the_rules_catch_a_circle_and_a_forbidden_import(monkeypatch):
    # The checks above see what they guard: a made-up training -> sharing import and a circle through it.
    monkeypatch.setitem(GRAPH, "multitask_st.training.plots", ["multitask_st.sharing.model_card"])
    monkeypatch.setitem(GRAPH, "multitask_st.sharing.model_card", ["multitask_st.training.plots"])
    with pytest.raises(AssertionError, match=r"training\) imports \['sharing'\]"):
        test_each_part_imports_only_what_it_may("multitask_st.training.plots")
    # The circle is found from whichever of its modules the walk reaches first.
    circle = {"multitask_st.sharing.model_card", "multitask_st.training.plots"}
    assert any(set(found) == circle and len(found) == 3 for found in _circles(set(MODULES) - {"multitask_st"}))
