"""Parameters are nested lists/tuples of arrays (autograd returns gradients in the
same structure). These helpers walk them in a fixed order."""

from __future__ import annotations


def leaves(tree):
    """The arrays of `tree` in depth-first order."""
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in leaves(item)]
    return [tree]


def rebuild(tree, new_leaves):
    """`tree`'s structure filled with `new_leaves` (in `leaves` order)."""
    it = iter(new_leaves)

    def fill(node):
        if isinstance(node, (list, tuple)):
            return type(node)(fill(item) for item in node)
        return next(it)

    return fill(tree)


def count(tree):
    """Total number of scalars in `tree`."""
    return sum(int(leaf.size) for leaf in leaves(tree))
