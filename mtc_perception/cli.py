"""``mtc``: the runtime command. ``mtc demo`` runs the mission on the embedded default (synthroad).

So far the demo covers what exists: generate synthroad, train a small teacher, evaluate it and
print its metrics. Later stages (prune + distill, export, rosbag replay) extend it.
Exit codes: 0 success, 2 bad input (message says what and how to fix), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("mtc")


def cmd_demo(a: argparse.Namespace) -> int:
    # the demo drives the offline half; the runtime package itself never needs it
    from compress.config_io import load_yaml
    from compress.data.synthroad import synthesize
    from compress.train import TrainConfig, train

    out = Path(a.out)
    data = out / "synthroad"
    t0 = time.perf_counter()
    n_train, n_val = (2000, 500) if a.full else (a.train_images, a.val_images)
    if (data / "synthroad.json").is_file() and not a.force:
        log.info("[1/3] synthroad exists at %s (reused; --force regenerates)", data)
    else:
        log.info("[1/3] generating synthroad: %d train / %d val images", n_train, n_val)
        synthesize(data, n_train, n_val, seed=0, size=(640, 360), workers=2, progress=True)
    recipe = Path(a.recipe) if a.recipe else Path(__file__).resolve().parents[1] / "config" / "train" / ("teacher_synthroad.yaml" if a.full else "demo.yaml")
    cfg = load_yaml(TrainConfig, recipe, {"data": str(data), "out": str(out / "teacher")})
    best = out / "teacher" / "best.pt"
    if best.is_file() and (out / "teacher" / "metrics.json").is_file() and not a.force:
        log.info("[2/3] teacher exists at %s (reused; --force retrains)", best)
        metrics = json.loads((out / "teacher" / "metrics.json").read_text())
    else:
        log.info("[2/3] training the teacher (%s, %d epochs at %dx%d)", cfg.model_size, cfg.epochs, *cfg.img_size)
        summary = train(cfg, progress=True)
        metrics = {"detection": summary["metrics"]["detection"], "drivable": summary["metrics"]["drivable"],
                   "lane": summary["metrics"]["lane"], **summary["profile"], "train_wall_seconds": summary["wall_seconds"],
                   "train_images_per_s": summary["train_images_per_s"]}
        (out / "teacher" / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("[3/3] teacher metrics on synthroad val")
    d, v, ln = metrics["detection"], metrics["drivable"], metrics["lane"]
    print()
    print(f"teacher ({cfg.model_size}): {metrics['params'] / 1e6:.2f}M params, {metrics['gmacs']:.3f} GMACs @ {metrics['macs_at']}")
    print(f"  {'recall':>8} {'mAP50':>8} {'mAP50-95':>9} {'drv mIoU':>9} {'lane acc':>9} {'lane IoU':>9}")
    print(f"  {d['recall']:8.3f} {d['map50']:8.3f} {d['map50_95']:9.3f} {v['miou']:9.3f} {ln['acc']:9.3f} {ln['iou']:9.3f}")
    print(f"\nteacher checkpoint: {best}\nmetrics: {out / 'teacher' / 'metrics.json'}\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtc", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the mission on generated synthroad scenes", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--out", default="runs/demo", help="working directory of the demo")
    d.add_argument("--full", action="store_true", help="benchmark-size configuration (2000/500 images, the default teacher)")
    d.add_argument("--recipe", help="training recipe YAML (default: config/train/demo.yaml, or teacher_synthroad.yaml with --full)")
    d.add_argument("--train-images", type=int, default=600)
    d.add_argument("--val-images", type=int, default=150)
    d.add_argument("--force", action="store_true", help="redo every stage instead of reusing finished ones")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return a.fn(a)
    except ImportError as e:
        log.error("%s: the demo needs the offline extras; install with: pip install -e '.[compress]' (torch==2.13.0 first on CPU)", e)
        return 2
    except ValueError as e:
        log.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
