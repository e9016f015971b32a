"""YAML from files someone else wrote (configs, a recording's metadata.yaml): ``yaml.SafeLoader``
that also refuses alias bombs, and a bounded rendering of values for error messages. Both halves
read YAML through it (``compress.config_io`` for configs, ``mtc_perception.bags`` for recordings)."""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

MAX_YAML_NODES = 100_000  # nodes of a YAML document with every alias expanded (configs here have < 1,000)
MAX_SHOWN = 200  # characters of a value's repr in an error message


def show(value: Any) -> str:
    """``repr(value)`` for an error message, cut at :data:`MAX_SHOWN` characters."""
    r = reprlib.Repr()  # attributes, not keywords: Python 3.10 and 3.11
    r.maxstring = r.maxother = MAX_SHOWN
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 20
    r.maxlevel = 4
    text = r.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts the nodes of each document with its aliases expanded (each
    node counted once per place it appears) before anything is constructed; more than
    :data:`MAX_YAML_NODES`, or an alias inside its own anchor, is a ``yaml.YAMLError``."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n: Any) -> int:
            key = id(n)
            if key in sizes:
                if sizes[key] < 0:
                    raise yaml.YAMLError("an alias refers to the node that contains it (a recursive anchor)")
                return sizes[key]
            sizes[key] = -1
            total = 1
            if isinstance(n, yaml.SequenceNode):
                children = n.value
            elif isinstance(n, yaml.MappingNode):
                children = [x for pair in n.value for x in pair]
            else:
                children = []
            for c in children:
                total += size(c)
                if total > MAX_YAML_NODES:
                    raise yaml.YAMLError(
                        f"its aliases expand to more than {MAX_YAML_NODES} nodes (an alias bomb?); "
                        "write the values out or use fewer aliases"
                    )
            sizes[key] = total
            return total

        if node is not None:
            size(node)
        return node


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` through :class:`BoundedLoader` (a ``yaml.YAMLError`` for an alias bomb)."""
    return yaml.load(text, Loader=BoundedLoader)
