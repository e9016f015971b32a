"""``mtc-compress demo``: the whole mission on the embedded default (synthroad), stage by stage.

1. data:     generate synthroad driving scenes          -> OUT/synthroad
2. teacher:  train a teacher                            -> OUT/teacher/best.pt (+ metrics.json)
3. compress: prune + distill the accuracy student       -> OUT/compress/student.pt (+ metrics.json)
4. deploy:   the deployable student (a recipe with a    -> OUT/deploy/student.pt (+ metrics.json)
             ``deploy:`` section and a latency budget)
5. export:   the three to ONNX bundles                  -> OUT/bundles/{teacher,student,deploy}
6. bag:      record a rosbag2 of validation frames      -> OUT/demo_bag (MCAP, with label topics)
7. bench:    replay it through the three, one report    -> OUT/bench/report.{json,md}, plots
8. overlays: the models' outputs on one frame           -> OUT/overlays/

Every stage writes a marker when it finishes; a re-run reuses finished stages (``--force`` redoes
them, ``--from-stage S`` redoes S and the ones after it; a stage that runs again makes every later
one run again, so nothing downstream is reused from older inputs). The end is a table of what
compression cost and bought, per student. It lives in the offline half because stages 1-5 need it
(torch); stages 6-8 run the runtime (``mtc_perception``) through its public API only. ``mtc demo``
runs this command.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("mtc-compress.demo")
ROOT = Path(__file__).resolve().parents[1]

STAGES = ("data", "teacher", "compress", "deploy", "export", "bag", "bench", "overlays")
STUDENTS = ("student", "deploy")  # the accuracy student (stage compress), the deployable one (stage deploy)
# each student's stage: its recipe, the default and the --full one (config/compress/)
STUDENT_STAGES = {
    "student": ("compress", "demo.yaml", "synthroad.yaml"),
    "deploy": ("deploy", "demo_deploy.yaml", "synthroad_deploy.yaml"),
}


def student_recipe(student: str, a: argparse.Namespace) -> Path:
    """The compression recipe of ``student`` (:data:`STUDENT_STAGES`): ``--compress-recipe`` /
    ``--deploy-recipe`` when given, else the demo's, or the benchmark's under ``--full``."""
    given = a.compress_recipe if student == "student" else a.deploy_recipe
    _, demo, full = STUDENT_STAGES[student]
    return Path(given) if given else ROOT / "config" / "compress" / (full if a.full else demo)


class Demo:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.times: dict[str, float] = {}
        self.reused: list[str] = []
        self.redo_from = STAGES.index(a.from_stage) if a.from_stage else (0 if a.force else len(STAGES))

    # -- stage bookkeeping ---------------------------------------------------------------------
    def _marker(self, stage: str) -> Path:
        return self.out / ".stages" / f"{stage}.json"

    def stage(self, i: int, name: str, fn: Any) -> Any:
        m = self._marker(name)
        head = f"[{i + 1}/{len(STAGES)}] {name}"
        if m.is_file() and i < self.redo_from:
            done = json.loads(m.read_text())
            log.info("%s: done before (%s), reused; --force or --from-stage %s redoes it", head, m, name)
            self.times[name] = float(done.get("seconds", 0.0))
            self.reused.append(name)
            return done.get("result", {})
        log.info("%s ...", head)
        t0 = time.perf_counter()
        result = fn()
        self.times[name] = time.perf_counter() - t0
        self.redo_from = min(self.redo_from, i + 1)  # later stages used older inputs: they run again
        m.parent.mkdir(parents=True, exist_ok=True)
        m.write_text(
            json.dumps({"seconds": round(self.times[name], 1), "result": result}, indent=2, default=str) + "\n"
        )
        log.info("%s: %.0f s", head, self.times[name])
        return result

    # -- stages ----------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        from .data.synthroad import synthesize

        n_train, n_val = (2000, 500) if self.a.full else (self.a.train_images, self.a.val_images)
        synthesize(
            self.out / "synthroad", n_train, n_val, seed=0, size=(640, 360), workers=2, progress=not self.a.quiet
        )
        return {"root": str(self.out / "synthroad"), "train": n_train, "val": n_val}

    def teacher(self) -> dict[str, Any]:
        from .config_io import load_yaml
        from .train import TrainConfig, train

        recipe = (
            Path(self.a.recipe)
            if self.a.recipe
            else ROOT / "config" / "train" / ("teacher_synthroad.yaml" if self.a.full else "demo.yaml")
        )
        cfg = load_yaml(TrainConfig, recipe, {"data": str(self.out / "synthroad"), "out": str(self.out / "teacher")})
        s = train(cfg, progress=not self.a.quiet)
        return {"checkpoint": s["best"], "recipe": str(recipe), "wall_seconds": s["wall_seconds"]}

    def _student(self, student: str) -> dict[str, Any]:
        from .pipeline import compress, load_recipe

        recipe = student_recipe(student, self.a)
        d = self.out / STUDENT_STAGES[student][0]
        r = load_recipe(recipe, {"teacher": str(self.out / "teacher" / "best.pt"), "out": str(d)})
        s = compress(r, progress=not self.a.quiet)
        return {
            "recipe": str(recipe),
            "metrics": str(d / "metrics.json"),
            "student": s["student"]["checkpoint"],
            "wall_seconds": s["wall_seconds"],
        }

    def compress(self) -> dict[str, Any]:
        """The accuracy student: pruned to a MACs budget and distilled (``config/compress/demo.yaml``)."""
        return self._student("student")

    def deploy(self) -> dict[str, Any]:
        """The deployable student (``config/compress/demo_deploy.yaml``): the recipe's ``deploy:`` target
        (ONNX Runtime on the CPU: ReLU, the width multiple), pruned to a measured-latency budget, distilled."""
        return self._student("deploy")

    def export(self) -> dict[str, Any]:
        from .export import ExportConfig, export_bundle

        out = {}
        ckpts = {"teacher": self.out / "teacher" / "best.pt"}
        ckpts.update({n: self.out / STUDENT_STAGES[n][0] / "student.pt" for n in STUDENTS})
        for name, ckpt in ckpts.items():  # a student's deploy target (activation, rewrite) is in its checkpoint
            d = self.out / "bundles" / name
            shutil.rmtree(d, ignore_errors=True)
            export_bundle(
                ckpt, d, ExportConfig(name=name, parity_frames=4, frames=str(self.out / "synthroad" / "images" / "val"))
            )
            out[name] = str(d)
        return out

    def bag(self) -> dict[str, Any]:
        from compress.data.frames import dataset_frames
        from mtc_perception.bags import WriteConfig, write_bag

        d = self.out / "demo_bag"
        shutil.rmtree(d, ignore_errors=True)
        s = write_bag(
            d,
            dataset_frames(self.out / "synthroad", "val"),
            WriteConfig(limit=self.a.bag_frames, resize=self.a.bag_size, fps=10.0),
        )
        return s.to_dict()

    def bench(self) -> dict[str, Any]:
        from mtc_perception.bench.replay import BenchConfig, run_bench

        cfg = BenchConfig(
            bag=self.out / "demo_bag",
            teacher=self.out / "bundles" / "teacher",
            student=None,
            students=tuple((n, self.out / "bundles" / n) for n in STUDENTS),
            out=self.out / "bench",
            backend="onnxruntime",
            progress=not self.a.quiet,
        )
        res = run_bench(cfg)
        if res.exit_code != 0:
            raise RuntimeError(
                f"the replay benchmark ended with exit code {res.exit_code}: {res.report['meta'].get('error')}"
            )
        return {k: str(v) for k, v in res.paths.items()}

    def overlays(self) -> dict[str, Any]:
        import cv2
        import numpy as np

        from mtc_perception.imaging import read_image
        from mtc_perception.perceptor import Perceptor
        from mtc_perception.viz import draw

        frames = sorted((self.out / "synthroad" / "images" / "val").glob("*.jpg"))
        frame = read_image(frames[min(3, len(frames) - 1)])
        d = self.out / "overlays"
        d.mkdir(exist_ok=True)
        tiles = {}
        for name in ("teacher", *STUDENTS):
            p = Perceptor(self.out / "bundles" / name, backend="onnxruntime")
            img = draw(frame, p(frame))
            cv2.putText(img, name, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
            cv2.imwrite(str(d / f"{name}.jpg"), img)
            tiles[name] = img
        # teacher | accuracy student (the README's picture), and all three in a row
        cv2.imwrite(str(d / "teacher_vs_student.jpg"), np.concatenate([tiles["teacher"], tiles["student"]], axis=1))
        cv2.imwrite(str(d / "all_models.jpg"), np.concatenate(list(tiles.values()), axis=1))
        return {
            **{n: str(d / f"{n}.jpg") for n in tiles},
            "side_by_side": str(d / "teacher_vs_student.jpg"),
            "all_models": str(d / "all_models.jpg"),
        }

    # -- all -------------------------------------------------------------------------------------
    def paths(self) -> dict[str, Path]:
        """Where the stages leave their results (derived from ``--out``, so a re-run from another
        directory finds them)."""
        o = self.out
        return {
            **{f"{n}_metrics": o / STUDENT_STAGES[n][0] / "metrics.json" for n in STUDENTS},
            "report_json": o / "bench" / "report.json",
            "report_md": o / "bench" / "report.md",
            "latency_cdf": o / "bench" / "latency_cdf.png",
            "agreement": o / "bench" / "agreement.png",
            "mosaic": o / "bench" / "disagreement_mosaic.jpg",
            "side_by_side": o / "overlays" / "teacher_vs_student.jpg",
            "all_models": o / "overlays" / "all_models.jpg",
            **{n: o / "bundles" / n for n in ("teacher", *STUDENTS)},
            "bag": o / "demo_bag",
            "summary": o / "summary.json",
        }

    def run(self) -> int:
        t0 = time.perf_counter()
        results = {}
        for i, name in enumerate(STAGES):
            results[name] = self.stage(i, name, getattr(self, name))
        P = self.paths()
        table, summary = self.summary(P, results["bag"])
        summary["stage_seconds"] = {k: round(v, 1) for k, v in self.times.items()}  # reused stages: when they ran
        summary["reused_stages"] = self.reused
        summary["wall_seconds"] = round(time.perf_counter() - t0, 1)  # this run
        P["summary"].write_text(json.dumps(summary, indent=2) + "\n")
        print("\n" + table)
        print(f"\nreport:   {P['report_md']}\n          {P['report_json']}")
        for k in ("latency_cdf", "agreement", "mosaic"):
            if P[k].is_file():
                print(f"plot:     {P[k]}")
        print(f"overlays: {P['side_by_side']}\n          {P['all_models']}")
        print("bundles:  " + "\n          ".join(str(P[n]) for n in ("teacher", *STUDENTS)))
        print(f"bag:      {P['bag']}\nsummary:  {P['summary']}  (this run: {summary['wall_seconds']:.0f} s)")
        if self.a.publish_docs:
            self.publish(P)
        return 0

    def summary(self, P: dict[str, Path], bag: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The closing table (accuracy from each student's compression metrics, speed from the replay
        report; the teacher's accuracy from the accuracy student's evaluation) and summary.json's figures."""
        comp = {n: json.loads(P[f"{n}_metrics"].read_text()) for n in STUDENTS}
        rep = json.loads(P["report_json"].read_text())
        size = "x".join(str(v) for v in bag.get("frame_size") or ("?", "?"))
        rows = {"teacher": _row(comp["student"]["teacher"], rep["models"]["teacher"])}
        rows.update({n: _row(comp[n]["student"], rep["models"][n]) for n in STUDENTS})
        t = rows["teacher"]
        speedups = {n: rows[n]["fps"] / t["fps"] if t["fps"] else float("nan") for n in STUDENTS}
        lines = [
            f"mtc demo: accuracy on synthroad val ({comp['student']['val_images']} images), speed on the demo bag "
            f"({rep['meta']['frames']['total']} frames at {size}, through the Perceptor, ONNX Runtime CPU)",
            f"student: the accuracy student ({_budget_note(comp['student'])}); deploy: the deployable student "
            f"({_budget_note(comp['deploy'])}); each change row: the student above it vs the teacher",
            f"{'':10}" + "".join(f"{c[0]:>13}" for c in COLUMNS),
            f"{'teacher':10}" + "".join(f"{c[2].format(t[c[1]]):>13}" for c in COLUMNS),
        ]
        for n in STUDENTS:
            lines.append(f"{n:10}" + "".join(f"{c[2].format(rows[n][c[1]]):>13}" for c in COLUMNS))
            lines.append(f"{'  change':10}" + "".join(f"{d:>13}" for d in _change(rows[n], t, speedups[n])))
        agreements = rep.get("agreements") or {}
        f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731 - a one-line formatter
        for n in STUDENTS:
            ag = agreements.get(n)
            if ag:
                det = ag.get("detection", {})
                lines.append(
                    f"{n} vs teacher on the bag: mAP50 {f(det.get('map50'))}, recall {f(det.get('recall'))}, "
                    f"drivable mIoU {f(ag.get('drivable', {}).get('miou'))}, lane IoU {f(ag.get('lane', {}).get('iou'))}"
                )
        return "\n".join(lines), {"rows": rows, "speedups": speedups, "agreements": agreements}

    def publish(self, P: dict[str, Path]) -> None:
        """Copy the pictures the README shows into docs/img."""
        d = ROOT / "docs" / "img"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(P["side_by_side"], d / "demo_teacher_vs_student.jpg")
        for k, name in (("latency_cdf", "demo_latency_cdf.png"), ("agreement", "demo_agreement.png")):
            if P[k].is_file():
                shutil.copy(P[k], d / name)
        log.info("pictures copied to %s", d)


COLUMNS = (  # header, key of a row, format
    ("params (M)", "params_M", "{:.3f}"),
    ("GMACs", "gmacs", "{:.3f}"),
    ("latency (ms)", "latency_ms", "{:.1f}"),
    ("fps", "fps", "{:.1f}"),
    ("recall", "recall", "{:.3f}"),
    ("mAP50", "map50", "{:.3f}"),
    ("drv mIoU", "drivable_miou", "{:.3f}"),
    ("lane IoU", "lane_iou", "{:.3f}"),
)


def _row(m: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """A table row: size and accuracy from the compression metrics ``m``, speed from the replay report's ``b``."""
    return {
        "params_M": m["params"] / 1e6,
        "gmacs": m["gmacs"],
        "latency_ms": b["latency_ms"]["mean"],
        "fps": b["throughput_fps"],
        "recall": m["recall"],
        "map50": m["map50"],
        "drivable_miou": m["drivable_miou"],
        "lane_iou": m["lane_iou"],
    }


def _change(s: dict[str, float], t: dict[str, float], speedup: float) -> list[str]:
    """Student ``s`` vs teacher ``t``: relative size and latency, throughput ratio, accuracy in points."""
    out = []
    for _, k, _fmt in COLUMNS:
        if k in ("params_M", "gmacs", "latency_ms"):
            out.append(f"{100 * (s[k] / t[k] - 1):+.1f}%")
        elif k == "fps":
            out.append(f"x{speedup:.2f}")
        else:
            out.append(f"{100 * (s[k] - t[k]):+.1f} pt")
    return out


def _budget_note(metrics: dict[str, Any]) -> str:
    """A student's recipe in a few words, from its metrics.json: ``macs budget -60%, widths x4`` or
    ``latency budget -40%, widths x4, relu (deploy onnxruntime-cpu)``."""
    r = metrics.get("recipe") or {}
    p, d = r.get("prune") or {}, r.get("deploy")
    note = f"{p.get('budget')} budget -{100 * float(p.get('target', 0)):.0f}%, widths x{p.get('round_to')}"
    return note + (f", {d.get('act') or 'the teacher activation'} (deploy {d.get('backend')})" if d else "")


def run(a: argparse.Namespace) -> int:
    return Demo(a).run()
