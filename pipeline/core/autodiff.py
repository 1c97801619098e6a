"""`value_and_grad` over a tree of parameter arrays.

`autograd.grad(f)(params)` boxes the whole list as one container: each
`params[i]` then becomes a traced getitem whose gradient is a sparse container
that autograd densifies with zeros for *every* array and adds into, a full
extra pass over all parameters per array. Boxing each array separately, with
its own root node, gives each gradient directly, and returns the loss value
from the same forward pass.
"""

from __future__ import annotations

from . import tree
from .autograd_internals import VJPNode, add_outgrads, getval, isbox, new_box, toposort, trace_stack, vspace


def value_and_grad(fun, has_aux=False):
    """fun(params, *args, **kwargs) -> scalar  becomes  (value, grads like params).
    With `has_aux`, fun returns (scalar, aux) and the result is ((value, aux),
    grads): aux (e.g. the logits the loss was computed from) is passed through
    undifferentiated, so a caller reads it without a second forward pass."""

    def value_and_grad_fun(params, *args, **kwargs):
        flat = tree.leaves(params)
        roots = [VJPNode.new_root() for _ in flat]
        with trace_stack.new_trace() as trace_id:
            boxed = [new_box(p, trace_id, root) for p, root in zip(flat, roots)]
            out = fun(tree.rebuild(params, boxed), *args, **kwargs)
            if has_aux:
                out, aux = out
                aux = tree.rebuild(aux, [getval(a) for a in tree.leaves(aux)])
            if not (isbox(out) and out._trace == trace_id):
                raise ValueError("the function's value does not depend on its parameters")
        value, end_node = out._value, out._node
        if vspace(value).shape != ():
            raise ValueError(f"value_and_grad needs a scalar function, got shape {vspace(value).shape}")

        root_index = {id(root): i for i, root in enumerate(roots)}
        grads = [None] * len(flat)
        outgrads = {end_node: (vspace(value).ones(), False)}
        for node in toposort(end_node):
            g = outgrads.pop(node)[0]
            if id(node) in root_index:
                grads[root_index[id(node)]] = g
                continue
            for parent, parent_grad in zip(node.parents, node.vjp(g)):
                outgrads[parent] = add_outgrads(outgrads.get(parent), parent_grad)
        # A parameter the value does not reach (e.g. a frozen layer) gets zeros.
        grads = [vspace(p).zeros() if g is None else g for p, g in zip(flat, grads)]
        return ((value, aux) if has_aux else value), tree.rebuild(params, grads)

    return value_and_grad_fun
