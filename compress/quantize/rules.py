"""Which nodes of a network stay in float when it is quantized to INT8: the rule, over the ONNX graph.

Rule (REFERENCE.md, "Quantization and deployment speed": quantizing YOLO-type decodes and head outputs
collapses accuracy): walk back from every graph output through the nodes that produce it; the walk
stops at the first ``Conv`` on each path (the head's output convolution: the 1x1 detection convs, the
segmentation ``out`` convs) and keeps it in float, together with every node between it and the output
(detection decode: Reshape / Transpose / Sigmoid / Slice / Mul / Add / Pow / Concat; output activations;
a DepthToSpace of a rewritten decoder, ``compress.models.deploy``). Found by structure, never by name,
so it holds for any bundle's graph. ``Constant`` nodes are left out of the list (they hold no
activation to quantize).
"""

from __future__ import annotations

from typing import Any

HEAD_CONV = "head_output_conv"  # the last Conv on a path to a graph output
AFTER_HEAD = "after_head_output_conv"  # between that Conv and the output (decode, output activations)
RULE = (
    "walk back from every graph output; the first Conv on each path (the head's output conv) and every node "
    "between it and the output (decode, output activations) stay float"
)
_SKIP = ("Constant",)


def float_kept_rules(model: Any) -> dict[str, str]:
    """Node name -> :data:`HEAD_CONV` or :data:`AFTER_HEAD` for the nodes ``model`` (an
    ``onnx.ModelProto``) keeps in float, in graph order. Unnamed nodes are an error (ONNX Runtime
    excludes nodes by name): name them first (:func:`name_nodes`)."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output if out}
    kept: dict[int, str] = {}
    stack = [o.name for o in graph.output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is None:  # a graph input or an initializer
            continue
        if node.op_type == "Conv":
            kept[id(node)] = HEAD_CONV
            continue  # stop: everything before the head's conv is quantized
        kept.setdefault(id(node), AFTER_HEAD)
        stack.extend(i for i in node.input if i)
    out: dict[str, str] = {}
    for node in graph.node:
        if id(node) in kept and node.op_type not in _SKIP:
            if not node.name:
                raise ValueError(
                    f"a {node.op_type} node on a path to a graph output has no name; call name_nodes first"
                )
            out[node.name] = kept[id(node)]
    return out


def float_kept_nodes(model: Any) -> list[str]:
    """The names of the nodes ``model`` keeps in float (:func:`float_kept_rules`), in graph order."""
    return list(float_kept_rules(model))


def name_nodes(model: Any) -> int:
    """Give every unnamed node of ``model`` a unique name (``<op>_<index>``), in place; returns how many."""
    names = {n.name for n in model.graph.node if n.name}
    added = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in names:
                name += "_"
            node.name = name
            names.add(name)
            added += 1
    return added
