"""The package's architecture, as its folders show it: each folder imports only
the layers below it, no module imports itself, and each command's code
version covers what that command runs and nothing else."""

import ast

import pytest

from pipeline import cli
from pipeline.common import versions

# folder -> the folders its modules may import ("" is the package's own __init__).
LAYERS = {
    "common": {"common"},
    "kernels": {"common", "kernels"},
    "core": {"common", "kernels", "core"},
    "datasets": {"", "common", "core", "datasets"},
    "runs": {"", "common", "kernels", "core", "datasets", "runs"},
    "plan": {"common", "core", "datasets", "runs", "plan"},
    "report": {"common", "runs", "report"},
    "studies": {"common", "report", "studies"},
    "bench": {"common", "kernels", "core", "datasets", "runs", "bench"},
}
MODULES = sorted(p.relative_to(versions.PACKAGE).as_posix() for p in versions.PACKAGE.rglob("*.py"))


def _folder(path):
    return path.split("/")[0] if "/" in path else ""


@pytest.mark.parametrize("module", [m for m in MODULES if _folder(m)])
def test_each_folder_imports_only_the_layers_below_it(module):
    folders = {_folder(imported) for imported in versions.imports(module)}
    assert folders <= LAYERS[_folder(module)], (
        f"{module} imports from {sorted(folders - LAYERS[_folder(module)])}"
    )


def test_no_module_imports_itself():
    for start in MODULES:
        seen, todo = set(), list(versions.imports(start))
        while todo:
            module = todo.pop()
            assert module != start, f"{start} imports itself through its imports"
            if module not in seen:
                seen.add(module)
                todo.extend(versions.imports(module))


def test_modules_and_functions_stay_short():
    for module in MODULES:
        text = (versions.PACKAGE / module).read_text()
        assert text.count("\n") <= 450, f"{module}: {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 60, (
                    f"{module}: {node.name} is {node.end_lineno - node.lineno + 1} lines"
                )


def test_each_command_hashes_what_it_runs():
    def files(command):
        modules, _ = cli.COMMAND_CODE[command]
        return set(versions.closure(*modules))

    train = files("train")
    assert {
        "core/autodiff.py",
        "core/tree.py",
        "core/losses.py",
        "core/primitives/conv.py",
        "core/models.py",
        "core/optim.py",
        "datasets/batches.py",
        "kernels/parallel.py",
    } <= train
    assert not any(f.startswith(("report/", "studies/", "plan/")) for f in train)
    report = files("report")
    assert {"studies/__init__.py", "studies/log_loss.py", "report/figures.py", "report/render.py"} <= report
    # The report renders results: no kernel, model or data code reruns it.
    assert not any(f.startswith(("kernels/", "core/", "datasets/")) for f in report), sorted(report)
    prepare = files("prepare")
    assert not any(f.startswith(("core/", "kernels/", "runs/")) for f in prepare), sorted(prepare)
    assert cli.command_version("report") != versions.code_version(
        *cli.COMMAND_CODE["report"][0]
    )  # templates count


def test_a_code_version_follows_the_import_graph(tmp_path, monkeypatch):
    """A change to any imported module, however deep, changes the hash; others do not."""
    fake = tmp_path / "pkg"
    (fake / "sub").mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '1'\n")
    (fake / "top.py").write_text("def f():\n    from .middle import g\n")
    (fake / "middle.py").write_text("from . import __version__\nfrom .sub import leaf\n")
    (fake / "sub" / "__init__.py").write_text("")
    (fake / "sub" / "leaf.py").write_text("from ..helper import h\n")
    (fake / "helper.py").write_text("h = 1\n")
    (fake / "unused.py").write_text("x = 1\n")
    (fake / "page.j2").write_text("a")
    monkeypatch.setattr(versions, "PACKAGE", fake)
    versions.imports.cache_clear()
    try:
        assert versions.closure("top") == [
            "__init__.py",
            "helper.py",
            "middle.py",
            "sub/__init__.py",
            "sub/leaf.py",
            "top.py",
        ]
        before = versions.code_version("top", extra=["*.j2"])
        (fake / "unused.py").write_text("x = 2\n")
        assert versions.code_version("top", extra=["*.j2"]) == before
        (fake / "page.j2").write_text("b")
        assert versions.code_version("top", extra=["*.j2"]) != before
        before = versions.code_version("top")
        (fake / "helper.py").write_text("h = 2\n")
        assert versions.code_version("top") != before
        # What the code does, not how it reads: a comment, a docstring or a
        # reflowed line changes nothing; a changed constant does.
        before = versions.code_version("top")
        (fake / "helper.py").write_text('"""The helper."""\n\nh = (  # why two\n    2\n)\n# a note\n')
        assert versions.code_version("top") == before
        (fake / "helper.py").write_text("h = 3\n")
        assert versions.code_version("top") != before
    finally:
        versions.imports.cache_clear()


def test_a_comment_reruns_no_training_and_a_changed_constant_does(tmp_path, monkeypatch):
    """The train rule's code version over a copy of the package: a comment
    appended to the losses leaves it, a changed Keras epsilon changes it."""
    import shutil

    copy = tmp_path / "pipeline"
    shutil.copytree(versions.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(versions, "PACKAGE", copy)
    versions.imports.cache_clear()
    try:
        before = cli.command_version("train")
        with open(copy / "core" / "losses.py", "a") as losses:
            losses.write("\n# A note on the losses.\n")
        assert cli.command_version("train") == before
        names = copy / "common" / "lossnames.py"
        names.write_text(names.read_text().replace("KERAS_EPSILON = 1e-7", "KERAS_EPSILON = 1e-6"))
        assert cli.command_version("train") != before
    finally:
        versions.imports.cache_clear()


PUBLIC_AUTOGRAD = ("autograd.extend", "autograd.numpy")


@pytest.mark.parametrize("module", MODULES)
def test_only_one_module_reaches_into_autograds_internals(module):
    """autograd's public API is autograd.extend and autograd.numpy; the rest
    (its tracer, its VJP tables) only through core/autograd_internals.py, which
    checks the installed version."""
    if module == "core/autograd_internals.py":
        return
    for node in ast.walk(ast.parse((versions.PACKAGE / module).read_text())):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and not node.level
            else []
        )
        for name in names:
            if name == "autograd" or name.startswith("autograd."):
                assert name in PUBLIC_AUTOGRAD, f"{module} imports {name}"


def test_an_autograd_outside_the_tested_range_stops_at_import_in_one_line():
    from pipeline.common.errors import SoftlossError
    from pipeline.core import autograd_internals

    assert autograd_internals._check("1.7.0") and autograd_internals._check("1.9.1")
    for installed in ("1.6.2", "1.10.0", "2.0"):
        with pytest.raises(
            SoftlossError, match=rf"autograd {installed} is installed; .* pip install 'autograd>=1.7,<1.10'"
        ):
            autograd_internals._check(installed)
