"""Which code produced a result: the package code a command runs, found from
its imports, and the git commit of the checkout.

`code_version("runs.train")` hashes `runs/train.py` and every package module it imports,
directly or through others (relative imports at any depth in a file, lazy ones
inside functions included, subpackages such as `studies/` too). Rules pass it
as a param, so a change to any of that code reruns the rule's jobs, and a new
import is followed without a hand-kept list.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def checkout_path(relative):
    """A file of the checkout (`config/config.yaml`, the vendored data): beside
    the package when it is installed from a checkout, whatever the working
    directory; else relative to the working directory."""
    beside = PACKAGE.parent / relative
    return beside if (PACKAGE.parent / "Snakefile").is_file() else Path(relative)


def _file(dotted):
    """The file of package module `dotted` ("runs.train", "studies.log_loss", "" for
    the package itself), relative to the package, or None if there is none."""
    parts = [p for p in dotted.split(".") if p]
    for candidate in (Path(*parts).with_suffix(".py") if parts else None, Path(*parts, "__init__.py")):
        if candidate is not None and (PACKAGE / candidate).is_file():
            return candidate.as_posix()
    return None


@cache
def imports(relative):
    """The package files that the file `relative` ("runs/train.py") imports itself."""
    here = Path(relative).parent.parts  # the (sub)package the file is in
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / relative).read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[: len(here) - (node.level - 1)]) if node.level > 1 else list(here)
            module = ".".join(base + ([node.module] if node.module else []))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            module = node.module.removeprefix("pipeline").lstrip(".")
        elif isinstance(node, ast.Import):
            found.update(f for a in node.names if a.name.startswith("pipeline.") and (f := _file(a.name[9:])))
            continue
        else:
            continue
        target = _file(module)
        if target is None:
            continue
        found.add(target)
        for alias in node.names:  # `from . import knet_softmax` names modules; other names live in `target`
            sub = _file(f"{module}.{alias.name}" if module else alias.name)
            if sub is not None:
                found.add(sub)
    found.discard(relative)  # a package's __init__ importing its own modules (`from . import a`)
    return frozenset(found)


def closure(*modules):
    """The files of `modules` (dotted names) and of everything they import from
    the package, transitively, as sorted paths relative to the package."""
    seen, todo = set(), [_file(m) for m in modules]
    if None in todo:
        raise ValueError(f"no such package module among {modules}")
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imports(path) - seen)
    return sorted(seen)


def _what_it_does(relative):
    """The bytes that stand for a file's behaviour: for Python, its syntax tree
    without docstrings (comments and layout are not in it), so that a comment
    or a reflowed line reruns nothing; for anything else (templates), the file."""
    return behaviour(PACKAGE / relative)


def behaviour(path):
    """What the file at `path` does, as `_what_it_does` reads a package file:
    for Python, its syntax tree without docstrings."""
    stat = Path(path).stat()
    return _behaviour(str(path), stat.st_mtime_ns, stat.st_size)


@cache
def _behaviour(path, mtime_ns, size):
    """`behaviour` of the file at `path` as it is at (mtime_ns, size)."""
    path = Path(path)
    if path.suffix != ".py":
        return path.read_bytes()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def code_version(*modules, extra=()):
    """12 hex digits of SHA-256 over what the files of `closure(*modules)` do and
    the `extra` files (glob patterns relative to the package, such as templates)."""
    files = closure(*modules) + sorted(
        {p.relative_to(PACKAGE).as_posix() for g in extra for p in PACKAGE.glob(g)}
    )
    digest = hashlib.sha256()
    for relative in files:
        digest.update(relative.encode() + b"\0" + _what_it_does(relative))
    return digest.hexdigest()[:12]


def git(*args):
    """git in the directory of this package's code: the commit the results came from."""
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10, cwd=PACKAGE
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def code_commit():
    """The commit of this package's code, marked when tracked files differ
    from it; None outside a git checkout."""
    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return commit
