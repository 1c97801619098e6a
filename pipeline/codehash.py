"""Which of the package's code a command runs, found from its imports.

`code_version("train")` hashes `train.py` and every package module it imports,
directly or through others (relative imports, at any depth in the file, lazy
ones inside functions included). Rules pass it as a param, so a change to any
of that code reruns the rule's jobs, and a new import is followed without a
hand-kept list.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def imports(module):
    """The package modules `module` (a name like "train") imports itself."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline."):
            names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("pipeline.")]
        else:
            continue
        # `from . import __version__` names no module: it comes from the package's __init__.
        found.update(name if (PACKAGE / f"{name}.py").is_file() else "__init__" for name in names)
    return frozenset(found)


def closure(*modules):
    """`modules` and everything they import from the package, transitively."""
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imports(module) - seen)
    return sorted(seen)


def code_version(*modules, extra=()):
    """12 hex digits of SHA-256 over the files of `closure(*modules)` and `extra`
    files (paths relative to the package, such as templates)."""
    digest = hashlib.sha256()
    for relative in [f"{m}.py" for m in closure(*modules)] + sorted(extra):
        digest.update(relative.encode() + b"\0" + (PACKAGE / relative).read_bytes())
    return digest.hexdigest()[:12]
