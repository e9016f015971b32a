"""Model bundles: a directory with ``bundle.json`` and the model files (see docs/DESIGN.md).

Only the standard library and numpy are used here, so the runtime can read a bundle on a machine
without torch, onnxruntime or TensorRT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = 1


class BundleError(ValueError):
    """A bundle that is missing, malformed, or disagrees with its files."""


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise BundleError(f"{where}: missing key {key!r}")
    return d[key]


@dataclass(frozen=True)
class Bundle:
    """A parsed ``bundle.json``; paths resolved against the bundle directory."""

    root: Path
    meta: dict[str, Any]

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        path = Path(path)
        root = path.parent if path.name == "bundle.json" else path
        f = root / "bundle.json"
        if not f.is_file():
            raise BundleError(
                f"{root} is not a model bundle: {f} does not exist; create one with "
                "`mtc-compress export --ckpt CKPT --out DIR`"
            )
        try:
            meta = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise BundleError(f"{f}: not valid JSON ({e}); re-export the bundle") from e
        b = cls(root, meta)
        b.validate()
        return b

    def validate(self) -> None:
        where = str(self.root / "bundle.json")
        m = self.meta
        if not isinstance(m, dict):
            raise BundleError(f"{where}: expected a JSON object")
        schema = _req(m, "schema", where)
        if schema != SCHEMA:
            raise BundleError(
                f"{where}: schema {schema} but this mtc_perception reads schema {SCHEMA}; re-export the bundle "
                "with this version of mtc-compress"
            )
        inp = _req(m, "input", where)
        for k in ("name", "height", "width", "color", "scale", "mean", "std", "pad_value"):
            _req(inp, k, f"{where} input")
        det = _req(m, "detection", where)
        for k in ("output", "class_names", "strides", "anchors", "layout"):
            _req(det, k, f"{where} detection")
        seg = _req(m, "segmentation", where)
        for task in ("drivable", "lane"):
            s = _req(seg, task, f"{where} segmentation")
            _req(s, "output", f"{where} segmentation.{task}")
        _req(m, "files", where)
        _req(m, "outputs", where)

    # -- accessors ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.root.name))

    @property
    def input_name(self) -> str:
        return self.meta["input"]["name"]

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input (width, height)."""
        return int(self.meta["input"]["width"]), int(self.meta["input"]["height"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["detection"]["class_names"])

    @property
    def output_names(self) -> list[str]:
        return [
            self.meta["detection"]["output"],
            self.meta["segmentation"]["drivable"]["output"],
            self.meta["segmentation"]["lane"]["output"],
        ]

    @property
    def output_shapes(self) -> dict[str, list[int | str]]:
        return dict(self.meta["outputs"])

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.meta["input"].get("dynamic_batch", False))

    def file(self, kind: str) -> Path | None:
        """Path of the ``onnx`` / ``engine`` / ``torch`` file, or None if the bundle has none."""
        rel = self.meta["files"].get(kind)
        return self.root / rel if rel else None

    def require_file(self, kind: str) -> Path:
        p = self.file(kind)
        if p is None:
            raise BundleError(
                f"{self.root}: the bundle has no {kind} file (bundle.json files.{kind} is empty); "
                + (
                    "build one on the target GPU with `mtc-compress export --ckpt CKPT --out DIR --engine`"
                    if kind == "engine"
                    else "re-export it with `mtc-compress export`"
                )
            )
        if not p.is_file():
            raise BundleError(f"{p} is named in {self.root / 'bundle.json'} but does not exist; re-export the bundle")
        return p

    @property
    def rebuild_hint(self) -> str:
        src = self.meta.get("provenance", {}).get("checkpoint", "CKPT")
        w, h = self.input_size
        return f"mtc-compress export --ckpt {src} --out {self.root} --size {w}x{h}"
