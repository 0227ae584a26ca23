"""The package's layout: sub-packages by concern, no import cycle, lower layers never depend on the stage runner,
small modules, thin scripts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "deepspeech_it"
LINE_LIMIT = 450
SCRIPT_LINE_LIMIT = 25


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """The project's modules PATH imports anywhere in it (functions included), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def test_the_package_has_no_import_cycle():
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for imported in sorted(GRAPH[name]):
            if state.get(imported) == "open":
                cycle = stack[stack.index(imported):] + [imported]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported)
        stack.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_nothing_below_the_pipeline_imports_it():
    offenders = sorted(f"{name} imports {imported}" for name, imports in GRAPH.items()
                       if not name.startswith("deepspeech_it.pipeline")
                       for imported in imports if imported.startswith("deepspeech_it.pipeline"))
    assert offenders == []


def test_every_stage_has_one_module_and_one_script_of_the_same_name():
    stages = sorted(path.stem[4:] for path in (PACKAGE / "pipeline").glob("s0[1-6]_*.py"))
    scripts = sorted(path.stem[3:] for path in (PROJECT_ROOT / "scripts").glob("0[1-6]_*.py"))
    assert stages == scripts == ["build_lm", "check_sources", "evaluate_lm", "export", "import_cv", "train"]
    for path in (PACKAGE / "pipeline").glob("s0[1-6]_*.py"):
        functions = {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}
        assert path.stem[4:] in functions, f"{path.name} has no function named like its stage"


def test_modules_stay_small_and_scripts_thin():
    long_modules = {name: lines for name, path in MODULES.items()
                    if (lines := len(path.read_text(encoding="utf-8").splitlines())) > LINE_LIMIT}
    assert long_modules == {}
    for script in (PROJECT_ROOT / "scripts").glob("0[1-6]_*.py"):
        assert len(script.read_text(encoding="utf-8").splitlines()) <= SCRIPT_LINE_LIMIT, script.name


def test_one_reader_of_deepspeech_csvs():
    """Only data/csvfile.py opens split CSVs with the csv module; everything else goes through it."""
    readers = sorted(name for name, path in MODULES.items()
                     if "csv.DictReader(handle)" in path.read_text(encoding="utf-8")
                     and name != "deepspeech_it.data.csvfile")
    assert readers == []


@pytest.mark.parametrize("literal, home", [
    ("16000", "deepspeech_it.data.framing"), ("32768", "deepspeech_it.data.framing"),
    ('"kenlm.scorer"', "deepspeech_it.config"), ('"output_graph.tflite"', "deepspeech_it.config"),
    ('"alphabet.txt"', "deepspeech_it.config"),
])
def test_each_constant_and_file_name_has_one_home(literal, home):
    """The sample format, the framing and the data folder's file names are written once; docstrings may cite them."""
    def code_without_docstrings(path: Path) -> str:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body[0] = ast.Pass()
        return ast.unparse(tree).replace("'", '"')

    holders = sorted(name for name, path in MODULES.items() if literal in code_without_docstrings(path))
    assert holders == [home]
