"""Forward parity of an imported YOLOP against YOLOP's own network class.

    python scripts/yolop_parity.py --yolop-repo /path/to/YOLOP [--weights End-to-end.pth] \
        [--sizes 640x384,320x192] [--out runs/yolop_parity.json]

Builds YOLOP's ``MCnet`` from a checkout of https://github.com/hustvl/YOLOP (its code is imported
from that folder at run time; none of it is part of this project), loads ``--weights`` into it (or
keeps its own random initialisation, saving that state dict to convert), converts the same file
with ``compress.importers.yolop`` and compares, on random images at each size, YOLOP's eval-mode
outputs (decoded detections, sigmoid drivable and lane maps) with
:meth:`compress.models.yolop.MultiTaskNet.upstream`. YOLOP normalizes its input with ImageNet's
mean/std outside the network; the imported network does it inside (``input_norm: imagenet``), so
YOLOP gets the normalized image and the import the [0, 1] image.

YOLOP's package imports modules its network does not use (torchvision, scipy, prefetch_generator,
...); where one is not installed this script puts an empty placeholder module in its place and says
so. Exit status 1 when any max abs difference exceeds ``--tol`` (1e-4).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.importers.yolop import import_state_dict, read_state_dict  # noqa: E402
from compress.models.config import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


class _Placeholder(types.ModuleType):
    """A module YOLOP imports but its network never calls."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []  # a package: its submodules are placeholders too

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(f"{self.__name__}.{name}")

    def __call__(self, *a, **k):  # decorators / classes used at import time
        return a[0] if a and callable(a[0]) else self


def upstream_net(repo: Path):
    sys.path.insert(0, str(repo))
    placeholders = []
    for _ in range(30):
        try:
            mod = importlib.import_module("lib.models.YOLOP")
            return mod.get_net(False), placeholders
        except ModuleNotFoundError as e:
            name = e.name or ""
            if not name or name.split(".")[0] == "lib" or name in placeholders:
                raise
            placeholders.append(name)
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                sys.modules.setdefault(".".join(parts[:i]), _Placeholder(".".join(parts[:i])))
            for k in [k for k in sys.modules if k == "lib" or k.startswith("lib.")]:
                del sys.modules[k]
    raise RuntimeError("could not import YOLOP's network")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--yolop-repo", type=Path, required=True, help="a checkout of hustvl/YOLOP")
    ap.add_argument("--weights", type=Path, help="YOLOP weights (default: YOLOP's random initialisation)")
    ap.add_argument("--sizes", default="640x384,320x192", help="input sizes WxH, comma separated")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument(
        "--write-keys",
        type=Path,
        help="write YOLOP's state-dict key names and shapes as JSON here (test/data/yolop_state_dict_keys.json)",
    )
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    net, placeholders = upstream_net(a.yolop_repo.resolve())
    if placeholders:
        print(f"placeholders for modules YOLOP imports but its network does not use: {placeholders}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = a.weights
        if weights is None:
            # random initialisation, with BatchNorm statistics that are not the identity
            with torch.no_grad():
                for m in net.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.5, 0.5)
                        m.running_var.uniform_(0.5, 2.0)
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.uniform_(-0.2, 0.2)
            weights = Path(tmp) / "random.pth"
            torch.save({"state_dict": net.state_dict()}, weights)
        sd = read_state_dict(weights)
        net.load_state_dict(sd)
        if a.write_keys:
            keys = {k: list(v.shape) for k, v in net.state_dict().items()}
            a.write_keys.write_text(
                json.dumps({"source": "hustvl/YOLOP lib/models/YOLOP.py get_net()", "keys": keys}) + "\n"
            )
        ours = import_state_dict(sd, source=str(weights))
    net.eval()
    ours.eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    report: dict[str, object] = {"weights": str(a.weights or "random init"), "tensors": len(sd), "sizes": {}}
    worst = 0.0
    for size in a.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        x = torch.rand(a.batch, 3, h, w)
        with torch.no_grad():
            det_u, da_u, ll_u = net((x - mean) / std)
            det_o, da_o, ll_o = ours.upstream(x)
        diffs = {
            "det": float((det_u[0] - det_o).abs().max()),
            "det_rel": float(((det_u[0] - det_o).abs() / det_u[0].abs().clamp_min(1.0)).max()),
            "drivable": float((da_u - da_o).abs().max()),
            "lane": float((ll_u - ll_o).abs().max()),
            "drivable_decisions_equal": bool(torch.equal(da_u.argmax(1), da_o.argmax(1))),
            "lane_decisions_equal": bool(torch.equal(ll_u.argmax(1), ll_o.argmax(1))),
        }
        report["sizes"][size] = diffs  # type: ignore[index]
        worst = max(worst, diffs["det"], diffs["drivable"], diffs["lane"])
        print(
            f"{size}: max |diff| det {diffs['det']:.3g} (relative {diffs['det_rel']:.3g}), "
            f"drivable {diffs['drivable']:.3g}, lane {diffs['lane']:.3g}"
        )
    report["max_abs_diff"] = worst
    report["pass"] = worst <= a.tol
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(("PASS" if report["pass"] else "FAIL") + f": worst {worst:.3g} (tolerance {a.tol:g})")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
