"""``mtc``: the runtime command. ``mtc infer`` runs a model bundle on images or a video; ``mtc bag``
records frames into a rosbag2 (a dataset split with its labels: ``mtc-compress bag --dataset``);
``mtc bench`` replays a rosbag2 through a teacher and any number of students and writes the benchmark report;
``mtc bundle`` makes a bundle of another project's ONNX export (YOLOP's). ``mtc demo`` runs ``mtc-compress demo`` (the
demo trains, so it lives in the offline half; the runtime never imports it).

Exit codes: 0 success, 2 bad input (message says what and how to fix), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .inputs import IMAGE_EXTS, VIDEO_EXTS, list_images, parse_size

log = logging.getLogger("mtc")


DEMO_MOVED = "the demo moved to the offline half: `mtc-compress demo` (same options)"


def run_demo(args: list[str], verbose: bool = False) -> int:
    """``mtc demo ARGS``: runs ``mtc-compress demo ARGS`` in a subprocess (the runtime never imports
    the offline half) and returns its exit code; 2 with the install command where it is missing."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("compress") is None or importlib.util.find_spec("torch") is None:
        print(
            f"mtc demo: {DEMO_MOVED}, which needs the offline extras (torch): pip install -e '.[compress]' "
            "(torch==2.13.0 first on CPU), then run `mtc-compress demo`",
            file=sys.stderr,
        )
        return 2
    print(f"mtc demo: {DEMO_MOVED}; running it", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "compress.cli", *(["--verbose"] if verbose else []), "demo", *args]
    return subprocess.run(cmd, check=False).returncode


def _frames(src: Path):
    """(name, BGR frame, error) from an image, a directory of images or a video. Image files are
    read by :func:`~mtc_perception.imaging.read_image` (any file name; size-checked before decoding;
    a truncated JPEG is an error); an unreadable one is yielded as (name, None, why) so that it is
    reported, not skipped silently. ``name`` is the path relative to ``src`` with its extension, as
    printable text (:func:`~mtc_perception.imaging.display_path`)."""
    import cv2

    from .imaging import ImageError, display_path, read_image

    def read(f: Path, name: str):
        try:
            return name, read_image(f), ""
        except (ImageError, OSError) as e:
            return name, None, str(e)

    if not src.exists():
        raise FileNotFoundError(
            f"--input {display_path(src)} does not exist; give an image, a directory of images or a video"
        )
    if src.is_dir():
        for f in list_images(src, what="--input"):
            yield read(f, display_path(f.relative_to(src).as_posix()))
    elif src.suffix.lower() in VIDEO_EXTS:
        if display_path(src) != str(src):
            raise ValueError(f"--input {display_path(src)}: OpenCV opens videos by UTF-8 names only; rename the file")
        cap = cv2.VideoCapture(str(src))
        if not cap.isOpened():
            raise FileNotFoundError(f"{src} cannot be opened as a video")
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield f"{src.stem}_{i:06d}", frame, ""
            i += 1
        cap.release()
    elif src.suffix.lower() in IMAGE_EXTS:
        yield read(src, display_path(src.name))
    else:
        raise ValueError(
            f"--input {display_path(src)}: unknown file type; use {IMAGE_EXTS} images, a directory of them, "
            f"or {VIDEO_EXTS} videos"
        )


def output_stem(name: str, taken: set[str]) -> str:
    """The file name (without the .jpg / .json ending) of frame ``name``'s outputs: its relative
    path with ``/`` as ``_`` and its extension kept (``a.jpg`` and ``a.png`` do not collide); a
    name already ``taken`` (compared case-insensitively) gets ``~2``, ``~3``, ... Adds it to ``taken``."""
    stem = name.replace("/", "_")
    out, k = stem, 2
    while out.casefold() in taken:
        out, k = f"{stem}~{k}", k + 1
    taken.add(out.casefold())
    return out


def cmd_infer(a: argparse.Namespace) -> int:
    import cv2

    from .frame import infer
    from .perceptor import Perceptor
    from .viz import draw

    perceptor = Perceptor(a.bundle, backend=a.backend, conf=a.conf, iou=a.iou, threads=a.threads)
    log.info("bundle %s on %s", a.bundle, perceptor.backend)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    failures: list[dict[str, str]] = []
    totals: dict[str, float] = {}
    taken: set[str] = set()
    for name, frame, error in _frames(Path(a.input)):
        if frame is None:
            failures.append({"frame": name, "error": error})
            log.error("%s: %s; skipped (counted as failed)", name, error)
            continue
        res = infer(perceptor, frame)
        error = res.error
        if not error:
            try:
                overlay = draw(frame, res.perception)
            except Exception as e:  # noqa: BLE001 - one unusable frame must not end the run
                error = f"drawing the overlay failed: {type(e).__name__}: {e}"
        if error:
            h, w = frame.shape[:2]
            failures.append({"frame": name, "error": f"{w}x{h} frame: {error}"})
            log.error("%s: %dx%d frame: %s; skipped (counted as failed)", name, w, h, error)
            continue
        p = res.perception
        n += 1
        for k, v in p.timings.items():
            totals[k] = totals.get(k, 0.0) + v
        stem = output_stem(name, taken)
        ok, jpg = cv2.imencode(".jpg", overlay)
        if not ok:
            raise RuntimeError(f"{name}: the overlay could not be encoded as JPEG")
        (out / f"{stem}.jpg").write_bytes(jpg.tobytes())
        (out / f"{stem}.json").write_text(
            json.dumps({"frame": name, "backend": perceptor.backend, **p.to_dict()}, indent=1) + "\n"
        )
    summary = {
        "frames": n,
        "failed": len(failures),
        "backend": perceptor.backend,
        "mean_ms": {k: round(v / max(n, 1), 3) for k, v in totals.items()},
        "failures": failures,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if not failures else 1


def source_frames(src: Path):
    """``--input`` (a video or a directory of images) as frames to record; an unreadable image
    is a frame without an image (``error`` says why), so that it is reported, not skipped silently."""
    from .bags import SourceFrame

    return (SourceFrame(name, img, error=error) for name, img, error in _frames(src))


def bag_config(a: argparse.Namespace):
    """The :class:`~mtc_perception.bags.WriteConfig` of the options :func:`add_bag_arguments` defines."""
    from .bags import WriteConfig

    return WriteConfig(
        storage=a.storage,
        distro=a.distro,
        transport=a.transport,
        fps=a.fps,
        camera_topic=a.topic,
        frame_id=a.frame_id,
        limit=a.limit,
        resize=a.resize,
        jpeg_quality=a.jpeg_quality,
        labels=not a.no_labels,
        gt_prefix=a.gt_prefix,
    )


def record_bag(a: argparse.Namespace, frames) -> int:
    """Record ``frames`` into ``a.out`` with the options of :func:`add_bag_arguments`; print the
    summary. Shared by ``mtc bag`` and ``mtc-compress bag``."""
    from .bags import write_bag

    cfg = bag_config(a)
    t0 = time.perf_counter()
    summary = write_bag(a.out, frames, cfg)
    log.info(
        "wrote %d frames (%s, %s, %s) to %s in %.1f s",
        summary.frames,
        cfg.storage,
        cfg.distro,
        cfg.topic,
        a.out,
        time.perf_counter() - t0,
    )
    for u in summary.unreadable:
        log.warning("not recorded: %s", u)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def cmd_bag(a: argparse.Namespace) -> int:
    if a.dataset:
        log.error(
            "`mtc bag --dataset` moved to the offline half, which reads datasets: run "
            "`mtc-compress bag --dataset %s --out %s ...` (same options); `mtc bag` records --input "
            "(a video or a directory of images)",
            a.dataset,
            a.out,
        )
        return 2
    return record_bag(a, source_frames(Path(a.input)))


def cmd_bench(a: argparse.Namespace) -> int:
    """Exit codes: 0 done; 2 bad input (also a damaged recording or a model that failed every frame:
    the report is written); 130 / 143
    interrupted by SIGINT / SIGTERM (the report of what was measured is written, except before the
    models were loaded: nothing was measured yet)."""
    from .bench.replay import BenchConfig, Interrupted, exit_code_of, run_bench, summary_text

    teacher_name, teacher, student, students = bench_models(a.teacher, a.student)
    cfg = BenchConfig(
        bag=Path(a.bag),
        teacher=teacher,
        student=student,
        students=students,
        teacher_name=teacher_name,
        out=Path(a.out),
        backend=a.backend,
        topic=a.topic,
        threads=a.threads,
        max_frames=a.max_frames,
        output_bag=a.output_bag,
        conf=a.conf,
        iou=a.iou,
        gt_prefix=a.gt_prefix,
        distro=a.distro,
        plots=not a.no_plots,
        mosaic=a.mosaic,
        warmup=a.warmup,
        md5=not a.no_md5,
        progress=not a.no_progress,
    )
    try:
        res = run_bench(cfg)
    except KeyboardInterrupt as e:  # before the models were loaded: nothing measured, no report
        signum = e.signum if isinstance(e, Interrupted) else None
        log.warning("interrupted before anything was measured; no report written in %s", cfg.out)
        return exit_code_of(signum)
    print(summary_text(res.report))
    print(f"report: {res.paths['report_md']} ({res.paths['report_json'].name})")
    return res.exit_code


def cmd_bundle(a: argparse.Namespace) -> int:
    """``mtc bundle --onnx MODEL.onnx --layout yolop --out DIR``: another project's ONNX export as a
    model bundle (:mod:`mtc_perception.byo_onnx`). Exit code 2 where the file does not fit the layout."""
    from .byo_onnx import write_bundle

    names = [n.strip() for n in a.class_names.split(",")] if a.class_names else None
    b = write_bundle(a.onnx, a.out, layout=a.layout, name=a.name, class_names=names)
    w, h = b.input_size
    log.info("wrote bundle %s (%s, layout %s, input %dx%d) from %s", b.root, b.name, a.layout, w, h, a.onnx)
    summary = {
        "bundle": str(b.root),
        "name": b.name,
        "layout": a.layout,
        "input": {"name": b.input_name, "width": w, "height": h},
        "outputs": b.output_shapes,
        "class_names": b.class_names,
    }
    print(json.dumps(summary, indent=2))
    return 0


def bench_models(teacher: str, students: list[str]) -> tuple[str, Path, Path | None, tuple[tuple[str, Path], ...]]:
    """``--teacher [NAME=]DIR`` and the ``--student [NAME=]DIR`` list -> (teacher name, teacher
    bundle, the one unnamed student of the one-student form (named ``student``) or None, the other
    (name, bundle) pairs). The teacher is ``teacher`` unless named; with several students an
    unnamed one takes its bundle directory's name. Names are checked by
    :class:`~mtc_perception.bench.replay.BenchConfig`."""
    from .bench.names import default_name, parse_model_spec

    t_name, t_path = parse_model_spec(teacher)
    specs = [parse_model_spec(s) for s in students]
    if len(specs) == 1 and specs[0][0] is None:  # `--teacher T --student S`, as before several students
        return t_name or "teacher", Path(t_path), Path(specs[0][1]), ()
    return t_name or "teacher", Path(t_path), None, tuple((n or default_name(p), Path(p)) for n, p in specs)


def add_bag_arguments(g: argparse.ArgumentParser) -> None:
    """The options of ``mtc bag`` and ``mtc-compress bag`` (one definition for both commands).
    ``--dataset`` is recorded by ``mtc-compress bag`` only (the runtime never reads datasets)."""
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="a video file or a directory of images (sorted by path)")
    src.add_argument(
        "--dataset", help="a BDD100K/YOLOP-layout dataset root (e.g. synthroad); its labels are recorded too"
    )
    g.add_argument("--split", default="val", help="dataset split (with --dataset)")
    g.add_argument(
        "--label-json",
        help="official BDD100K detection label file (one JSON list) instead of YOLOP's per-image "
        "JSONs (with --dataset; images under DATASET/images/SPLIT, no masks)",
    )
    g.add_argument(
        "--drivable-mapping",
        choices=["yolop_binary", "bdd_v1", "bdd_toolkit"],
        help="how dataset drivable-mask values become drivable (with --dataset; default: bdd_toolkit for a "
        "BDD100K download's own masks, else yolop_binary)",
    )
    g.add_argument(
        "--lane-mapping",
        choices=["binary", "bdd_toolkit"],
        help="how dataset lane-mask values become lane (with --dataset; default: bdd_toolkit, 255 background, "
        "for a BDD100K download's own masks, else binary)",
    )
    g.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    g.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="rosbag2 storage plugin")
    g.add_argument(
        "--distro", default="humble", choices=["humble", "jazzy"], help="message definitions (rosbags typestore)"
    )
    g.add_argument(
        "--transport",
        default="raw",
        choices=["raw", "compressed"],
        help="raw: sensor_msgs/Image bgr8; compressed: sensor_msgs/CompressedImage jpeg",
    )
    g.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality with --transport compressed")
    g.add_argument(
        "--topic",
        help="camera topic (default: /camera/image_raw, or /camera/image_raw/compressed with --transport compressed)",
    )
    g.add_argument(
        "--gt-prefix",
        default="/ground_truth",
        help="label topics: PREFIX/detections, PREFIX/drivable_mask, PREFIX/lane_mask",
    )
    g.add_argument("--no-labels", action="store_true", help="do not record a dataset's labels")
    g.add_argument("--fps", type=float, default=10.0, help="frame rate of the header stamps (and log times)")
    g.add_argument("--frame-id", default="camera", help="header.frame_id of every message")
    g.add_argument("--limit", type=int, help="record at most this many frames")
    g.add_argument("--resize", type=parse_size, help="resize frames (and labels) to WIDTHxHEIGHT, e.g. 1280x720")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtc", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser(
        "demo",
        help="moved to the offline half: runs `mtc-compress demo` with the same options (pip install -e .[compress])",
        add_help=False,
    )

    i = sub.add_parser(
        "infer",
        help="run a bundle on images / a video: overlays and per-frame JSON",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    i.add_argument("--bundle", required=True, help="model bundle directory (from mtc-compress export)")
    i.add_argument("--input", required=True, help="an image, a directory of images, or a video")
    i.add_argument(
        "--out",
        required=True,
        help="output directory: <frame>.jpg overlays, <frame>.json (<frame>: the input's relative path with its "
        "extension, / as _), summary.json",
    )
    i.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "tensorrt", "onnxruntime", "torch"],
        help="inference backend (auto: TensorRT engine if present and usable, else ONNX Runtime)",
    )
    i.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold")
    i.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    i.add_argument("--threads", type=int, help="CPU threads of the backend")
    i.set_defaults(fn=cmd_infer)
    b = sub.add_parser(
        "bench-engines",
        help="bundles side by side through the Perceptor: stage times, throughput, speed-up",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument(
        "--bundle",
        action="append",
        required=True,
        help="[NAME=]BUNDLE_DIR (repeat; the first is the reference every other is compared with; names default "
        "to the directory's name and must differ)",
    )
    b.add_argument("--frames", required=True, help="directory of images (resized to --size)")
    b.add_argument("--size", type=parse_size, default=(1280, 720), help="frame size WIDTHxHEIGHT")
    b.add_argument("--max-frames", type=int, default=100, help="frames taken from --frames")
    b.add_argument("--runs", type=int, default=1, help="passes over the frames")
    b.add_argument(
        "--block",
        type=int,
        default=10,
        help="the bundles take turns on blocks of this many frames (a slow spell of the "
        "machine lands on all alike); 0: one bundle after the other",
    )
    b.add_argument(
        "--backend",
        default="onnxruntime",
        choices=["auto", "tensorrt", "onnxruntime", "torch"],
        help="inference backend",
    )
    b.add_argument("--threads", type=int, help="backend CPU threads")
    b.add_argument(
        "--graph-optimization",
        choices=["all", "extended", "basic"],
        help="ONNX Runtime graph optimization level (default: extended)",
    )
    b.add_argument(
        "--profile",
        action="store_true",
        help="after the timed runs, profile each bundle under ONNX Runtime (every frame once): time per op type "
        "as ms per frame and %% of the node time, in engines.json/md",
    )
    b.add_argument("--out", default="runs/bench/engines", help="output directory: engines.json, engines.md")
    b.set_defaults(fn=lambda a: __import__("mtc_perception.bench.engines", fromlist=["main"]).main(a))
    g = sub.add_parser(
        "bag",
        help="record frames (a video or an image folder) into a rosbag2; a dataset split with its labels: "
        "mtc-compress bag --dataset",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_bag_arguments(g)
    g.set_defaults(fn=cmd_bag)
    r = sub.add_parser(
        "bench",
        help="replay a rosbag2 through a teacher and one or more students: speed, agreement, accuracy report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument("--bag", required=True, help="rosbag2 directory (mcap or sqlite3), or a single .mcap/.db3 file")
    r.add_argument(
        "--teacher",
        required=True,
        help="[NAME=]BUNDLE_DIR: the teacher, the reference of every agreement (named teacher unless NAME=)",
    )
    r.add_argument(
        "--student",
        action="append",
        required=True,
        help="[NAME=]BUNDLE_DIR: a student (repeat for several, e.g. --student fast=bundles/fast --student "
        "int8=bundles/fast_int8); one unnamed student is named student, several take their directory's name; "
        "names must differ",
    )
    r.add_argument(
        "--out", required=True, help="output directory: report.json, report.md, frames.csv, plots[, replay_bag]"
    )
    r.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "tensorrt", "onnxruntime", "torch"],
        help="inference backend of every model",
    )
    r.add_argument(
        "--topic",
        help="camera topic (default: /camera/image_raw, /camera/image_raw/compressed, or the only image topic)",
    )
    r.add_argument("--threads", type=int, help="CPU threads of each backend")
    r.add_argument("--max-frames", type=int, help="process at most this many frames (the rest count as skipped)")
    r.add_argument(
        "--output-bag",
        action="store_true",
        help="also write OUT/replay_bag: the camera topic plus every model's /<name>/* detections and masks, same stamps",
    )
    r.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold of every model")
    r.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold of every model")
    r.add_argument("--gt-prefix", default="/ground_truth", help="label topics to score against, when the bag has them")
    r.add_argument(
        "--distro",
        default="humble",
        choices=["humble", "jazzy"],
        help="message definitions for bags without embedded ones and for the output bag",
    )
    r.add_argument("--mosaic", type=int, default=6, help="frames of largest disagreement in the mosaic (0: none)")
    r.add_argument("--warmup", type=int, default=3, help="untimed engine runs per model before the replay")
    r.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots and the mosaic")
    r.add_argument("--no-md5", action="store_true", help="skip hashing the recording (meta.bag.md5 is null)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_bench)
    m = sub.add_parser(
        "bundle",
        help="make a model bundle of another project's ONNX export (layout yolop: hustvl/YOLOP's export_onnx.py)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m.add_argument("--onnx", required=True, help="the ONNX file, e.g. YOLOP's weights/yolop-640-640.onnx")
    m.add_argument(
        "--layout",
        default="yolop",
        help="its interface (tensor names, shapes, preprocessing); known: yolop (input images 1x3xHxW RGB ImageNet "
        "mean/std, det_out (1, N, 6), drive_area_seg and lane_line_seg (1, 2, H, W))",
    )
    m.add_argument("--out", required=True, help="bundle directory to create (must not exist, or be empty)")
    m.add_argument("--name", help="the bundle's name (default: the --out directory's name)")
    m.add_argument(
        "--class-names", help="detection class names, comma-separated (default: the layout's; yolop: vehicle)"
    )
    m.set_defaults(fn=cmd_bundle)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    i = 0
    while i < len(argv) and argv[i] in ("-v", "--verbose"):
        i += 1
    if i < len(argv) and argv[i] == "demo":  # passed on whole, --help included
        return run_demo(argv[i + 1 :], verbose=i > 0)
    a = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return a.fn(a)
    except ImportError as e:
        log.error("%s: install the missing package (pip install -e '.[bench]' has the bag and bench tools)", e)
        return 2
    except (
        ValueError,
        FileNotFoundError,
        RuntimeError,
    ) as e:  # BundleError/FrameError are ValueErrors, EngineUnavailable a RuntimeError
        log.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
