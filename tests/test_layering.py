"""The import rules of docs/architecture.md, checked on the source's AST
(every import, also the ones inside functions):

- model/ (pushed to the box) imports only model and its libraries, never the
  laptop's (boto3, botocore, fabric, paramiko, common, provision, remote);
- box/ imports only the standard library (the box's python3 runs it before
  any environment exists);
- provision and remote never import each other, anywhere: cli/ composes them
  (both command lines live there);
- no package imports cli/ but two launchers, provision/__main__.py and
  remote/__main__.py (`python -m provision`, `python -m remote`);
- the sandbox (a cloud standing in for EC2) may use provision's and common's
  modules, never remote's; provision and remote never import it: provision
  speaks AWS only, and the command line (cli/) picks the cloud;
- the laptop (box, cli, common, provision, remote, sandbox) never imports TensorFlow, Keras
  or JAX (the CLI must start fast, and the laptop install has none), nor
  model/, except its contract modules (CONTRACT: the run folder's file names
  and its report page), which with model/__init__ import only the standard
  library and each other;
- common imports neither half, nor the sandbox, nor cli/;
- no module of a laptop package imports one that imports it back, and no
  module of cli/ is over about 350 lines.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ML = {"tensorflow", "keras", "jax", "tf_keras"}
# model/'s modules the laptop may import: pure readers of what a run writes.
CONTRACT = {"model.run_files", "model.report_page"}
LAPTOP_LIBS = {
    "boto3",
    "botocore",
    "fabric",
    "paramiko",
    "invoke",
    "cli",
    "common",
    "provision",
    "remote",
    "sandbox",
    "box",
    "templates",
}
# Every package of the tree (a new one is checked without being named here).
PACKAGES = sorted(d.name for d in REPO.iterdir() if (d / "__init__.py").is_file() and d.name != "tests")
# The laptop's packages: what the laptop-wide rules below cover.
LAPTOP = ("box", "cli", "common", "provision", "remote", "sandbox", "templates")
# The only modules outside cli/ that import it: `python -m provision`'s and `python -m remote`'s.
LAUNCHERS = {"provision/__main__.py", "remote/__main__.py"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in path; relative ones as the package itself."""
    package = path.parent.name
    return [(line, name.split(".")[0]) for line, name in full_imports(path, package)]


def full_imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in path; ``from model import x`` gives model.x."""
    package = package or path.parent.name
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package if node.level else node.module
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def violations(package: str, allowed, root: Path = REPO) -> list[str]:
    bad = []
    for f in sorted((root / package).glob("*.py")):
        for line, mod in imports(f):
            if not allowed(f, mod):
                bad.append(f"{f.relative_to(root)}:{line} imports {mod}")
    return bad


def is_launcher(f: Path) -> bool:
    return f.relative_to(REPO).as_posix() in LAUNCHERS


def test_model_imports_only_model_and_its_libraries():
    assert violations("model", lambda f, m: m not in LAPTOP_LIBS) == []


def test_box_imports_only_the_standard_library():
    assert violations("box", lambda f, m: m == "box" or m in sys.stdlib_module_names) == []


def test_provision_and_remote_never_import_each_other():
    why = "provision and remote never import each other (cli/ composes them): "
    bad = violations("provision", lambda f, m: m != "remote") + violations("remote", lambda f, m: m != "provision")
    assert bad == [], why + "; ".join(bad)


def test_only_the_two_launchers_import_the_composing_package():
    assert "cli" in PACKAGES and {"provision", "remote", "common", "model"} <= set(PACKAGES)
    bad = [v for p in PACKAGES if p != "cli" for v in violations(p, lambda f, m: m != "cli" or is_launcher(f))]
    assert bad == [], "only provision/__main__.py and remote/__main__.py may import cli/: " + "; ".join(bad)


def test_the_launchers_import_the_composing_package():
    for launcher in sorted(LAUNCHERS):
        assert "cli" in {m for _, m in imports(REPO / launcher)}, launcher


def test_common_imports_neither_half():
    assert violations("common", lambda f, m: m not in ("provision", "remote", "sandbox", "model", "cli")) == []


def no_sandbox(f: Path, module: str) -> bool:
    """provision's and remote's rule: the sandbox is never named (cli/ picks the cloud)."""
    return module != "sandbox"


def test_provision_and_remote_never_import_the_sandbox():
    assert violations("provision", no_sandbox) == [], "provision speaks AWS only: cli/ picks the cloud"
    assert violations("remote", no_sandbox) == []


def test_the_sandbox_check_catches_a_module_importing_it(tmp_path):
    pkg = tmp_path / "provision"
    pkg.mkdir()
    (pkg / "lifecycle.py").write_text("def stop():\n    from sandbox import boxes\n")
    (pkg / "up.py").write_text("from common import aws\n")
    assert violations("provision", no_sandbox, tmp_path) == ["provision/lifecycle.py:2 imports sandbox"]


def test_the_sandbox_uses_provision_and_common_never_remote():
    assert violations("sandbox", lambda f, m: m not in ("remote", "model", "cli")) == []


def test_the_laptop_never_imports_tensorflow_keras_or_jax():
    for package in LAPTOP:
        assert violations(package, lambda f, m: m not in ML) == [], package


def laptop_model_imports(path: Path, root: Path = REPO) -> list[str]:
    """The imports of model/ in path that are not of its contract modules."""
    return [
        f"{path.relative_to(root)}:{line} imports {name}"
        for line, name in full_imports(path)
        if name.split(".")[0] == "model" and ".".join(name.split(".")[:2]) not in CONTRACT
    ]


def test_the_laptop_imports_of_model_only_its_contract_modules():
    bad = [v for package in LAPTOP for f in sorted((REPO / package).glob("*.py")) for v in laptop_model_imports(f)]
    assert bad == []


def test_the_contract_modules_import_only_the_standard_library():
    for f in [REPO / "model" / "__init__.py", *(REPO / f"{m.replace('.', '/')}.py" for m in CONTRACT)]:
        for line, name in full_imports(f):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or ".".join(name.split(".")[:2]) in CONTRACT, (
                f"{f.relative_to(REPO)}:{line} imports {name}"
            )


def test_the_contract_check_catches_a_model_import_beyond_it(tmp_path):
    f = tmp_path / "remote" / "x.py"
    f.parent.mkdir()
    f.write_text("from model import run_files\nfrom model.train import train\nimport model.report_page\n")
    assert laptop_model_imports(f, tmp_path) == ["remote/x.py:2 imports model.train.train"]


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "remote" / "x.py"
    f.parent.mkdir()
    f.write_text("def f():\n    from provision import up\n    import keras.layers\n")
    assert imports(f) == [(2, "provision"), (3, "keras")]


def module_imports(f: Path, package: str) -> set[str]:
    """The sibling modules (file stems) of package that f imports, also inside functions."""
    found = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (package + (f".{node.module}" if node.module else "")) if node.level else (node.module or "")
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == package and len(parts) > 1 and parts[1] != f.stem and (f.parent / f"{parts[1]}.py").exists():
                found.add(parts[1])
    return found


def import_cycles(package: str) -> set[tuple[str, ...]]:
    """Every cycle of imports among package's modules, each as its modules from the smallest name on."""
    graph = {f.stem: module_imports(f, package) for f in (REPO / package).glob("*.py")}
    cycles = set()

    def walk(path: list[str]) -> None:
        for nxt in graph.get(path[-1], ()):
            if nxt in path:
                cycle = path[path.index(nxt) :]
                i = cycle.index(min(cycle))
                cycles.add(tuple(cycle[i:] + cycle[:i]))
            elif len(path) < len(graph):
                walk([*path, nxt])

    for start in graph:
        walk([start])
    return cycles


KNOWN_CYCLES: set[tuple[str, tuple[str, ...]]] = set()


def test_the_cycle_finder_sees_a_two_module_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import thing\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = {f.stem: module_imports(f, "pkg") for f in pkg.glob("*.py")}
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}


def test_no_module_of_a_laptop_package_imports_one_that_imports_it_back():
    found = {(p, c) for p in LAPTOP if p != "templates" for c in import_cycles(p)}
    assert found - KNOWN_CYCLES == set(), "import cycles between modules: " + "; ".join(
        f"{p}: {' -> '.join((*c, c[0]))}" for p, c in sorted(found - KNOWN_CYCLES)
    )


# The command lines are split by command group; past this a module is two groups (issue 24).
CLI_MODULE_LINES = 350


def test_no_module_of_the_command_lines_is_over_about_350_lines():
    long = {f.name: n for f in (REPO / "cli").glob("*.py") if (n := len(f.read_text().splitlines())) > CLI_MODULE_LINES}
    assert long == {}, f"cli/ modules over {CLI_MODULE_LINES} lines: {long}; split them by command group"
