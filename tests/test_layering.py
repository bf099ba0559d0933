"""The import rules of docs/architecture.md, checked on the source's AST
(every import, also the ones inside functions):

- model/ (pushed to the box) imports only model and its libraries, never the
  laptop's (boto3, botocore, fabric, paramiko, common, provision, remote);
- box/ imports only the standard library (the box's python3 runs it before
  any environment exists);
- provision and remote library modules do not import each other (their CLIs
  compose them);
- the laptop (box, common, provision, remote) never imports TensorFlow, Keras
  or JAX (the CLI must start fast, and the laptop install has none);
- common imports neither half.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ML = {"tensorflow", "keras", "jax", "tf_keras"}
LAPTOP_LIBS = {"boto3", "botocore", "fabric", "paramiko", "invoke", "common", "provision", "remote", "box", "templates"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in path; relative ones as the package itself."""
    package = path.parent.name
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, package if node.level else node.module.split(".")[0]))
    return out


def violations(package: str, allowed) -> list[str]:
    bad = []
    for f in sorted((REPO / package).glob("*.py")):
        for line, mod in imports(f):
            if not allowed(f, mod):
                bad.append(f"{f.relative_to(REPO)}:{line} imports {mod}")
    return bad


def is_cli(f: Path) -> bool:
    return f.name in ("cli.py", "__main__.py")


def test_model_imports_only_model_and_its_libraries():
    assert violations("model", lambda f, m: m not in LAPTOP_LIBS) == []


def test_box_imports_only_the_standard_library():
    assert violations("box", lambda f, m: m == "box" or m in sys.stdlib_module_names) == []


def test_provision_and_remote_libraries_do_not_import_each_other():
    assert violations("provision", lambda f, m: m != "remote" or is_cli(f)) == []
    assert violations("remote", lambda f, m: m != "provision" or is_cli(f)) == []


def test_common_imports_neither_half():
    assert violations("common", lambda f, m: m not in ("provision", "remote", "model")) == []


def test_the_laptop_never_imports_tensorflow_keras_or_jax():
    for package in ("box", "common", "provision", "remote", "templates"):
        assert violations(package, lambda f, m: m not in ML and m != "model") == [], package


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "remote" / "x.py"
    f.parent.mkdir()
    f.write_text("def f():\n    from provision import up\n    import keras.layers\n")
    assert imports(f) == [(2, "provision"), (3, "keras")]
