"""Metrics checked against independent references: pycocotools for AP/recall, hand-computed
confusion matrices for masks."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from compress.metrics import DetectionMetrics, SegMetrics, drivable_metrics, lane_metrics


def _random_case(seed: int, nc: int, n_img: int = 40):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n_img):
        m = int(rng.integers(0, 7))
        xy = rng.uniform(0, 300, (m, 2))
        wh = rng.uniform(4, 90, (m, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        gc = rng.integers(0, nc, m)
        keep = rng.uniform(size=m) < 0.8  # some ground truth is missed
        p = gt[keep] + rng.normal(0, 5, (int(keep.sum()), 4))
        pc = gc[keep].copy()
        k = int(rng.integers(0, 5))
        xy2, wh2 = rng.uniform(0, 300, (k, 2)), rng.uniform(4, 90, (k, 2))
        p = np.concatenate([p, np.concatenate([xy2, xy2 + wh2], 1)])
        pc = np.concatenate([pc, rng.integers(0, nc, k)])
        p[:, 2:] = np.maximum(p[:, 2:], p[:, :2] + 1)
        s = rng.uniform(0.001, 1, len(p))
        cases.append((p, s, pc, gt, gc))
    return cases


def _pycocotools(cases, nc):
    images, anns, dets = [], [], []
    for i, (p, s, pc, gt, gc) in enumerate(cases):
        images.append({"id": i, "width": 400, "height": 400})
        for b, c in zip(gt, gc):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(c),
                    "iscrowd": 0,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": float((b[2] - b[0]) * (b[3] - b[1])),
                }
            )
        for b, c, sc in zip(p, pc, s):
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(c),
                    "score": float(sc),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                }
            )
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(nc)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        res = coco.loadRes(dets)
        ev = COCOeval(coco, res, "bbox")
        ev.params.maxDets = [1, 10, 1000]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, K): all areas, max dets
    ap = prec.mean(1)  # (T, K)
    rec = ev.eval["recall"][0, :, 0, -1]  # IoU 0.5, per class
    return ap, rec


@pytest.mark.parametrize("seed,nc", [(0, 1), (1, 1), (2, 3)])
def test_map_and_recall_match_pycocotools(seed, nc):
    cases = _random_case(seed, nc)
    dm = DetectionMetrics(nc, ap_method="coco")
    for c in cases:
        dm.update(*c)
    ours = dm.compute()
    ap, rec = _pycocotools(cases, nc)
    assert ours["map50"] == pytest.approx(ap[0].mean(), abs=1e-9)
    assert ours["map50_95"] == pytest.approx(ap.mean(), abs=1e-9)
    assert ours["recall"] == pytest.approx(rec.mean(), abs=1e-9)
    assert 0.2 < ours["map50"] < 0.95  # the case is neither trivial nor empty


def test_yolov5_integration_and_perfect_case():
    cases = _random_case(3, 1)
    a = DetectionMetrics(1, "yolov5")
    for c in cases:
        a.update(*c)
    r = a.compute()
    # the linear tail to (recall 1, precision 0) only adds area over the COCO step integration
    assert r["map50"] > r["map50_coco"] > 0.2
    # one class, one image: precision 1 up to recall 0.5, then a false positive, then the 2nd hit
    one = DetectionMetrics(1, "yolov5")
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]])
    one.update(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30.0]]), [0.9, 0.8, 0.7], [0, 0, 0], gt, [0, 0])
    # recall/precision points: (0.5, 1), (0.5, 0.5), (1, 2/3); envelope: 1 up to r=0.5, 2/3 after
    x = np.linspace(0, 1, 101)
    env = np.interp(x, [0, 0.5, 0.5, 0.5, 1, 1], [1, 1, 2 / 3, 2 / 3, 2 / 3, 0])
    assert one.compute()["map50"] == pytest.approx(np.trapezoid(env, x))
    assert one.compute()["map50_coco"] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    perfect = DetectionMetrics(1, "yolov5")
    gt = np.array([[10, 10, 50, 60], [100, 100, 140, 180.0]])
    perfect.update(gt, [0.9, 0.8], [0, 0], gt, [0, 0])
    r = perfect.compute()
    assert r["recall"] == 1.0 and r["precision"] == 1.0
    assert r["map50"] > 0.99 and r["map50_95"] > 0.99


def test_wrong_class_is_not_a_match():
    dm = DetectionMetrics(2, "coco")
    gt = np.array([[10, 10, 50, 60.0]])
    dm.update(gt, [0.9], [1], gt, [0])
    r = dm.compute()
    assert r["map50"] == 0.0 and r["recall"] == 0.0


def test_seg_metrics_hand_computed_confusion_matrix():
    target = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]])
    pred = np.array([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]])
    # by hand: TP = 4 (0,0)(1,0)(1,1)(2,3); FN = 1 (0,1); FP = 1 (1,2); TN = 6
    s = SegMetrics()
    s.update(pred, target)
    assert s.cm.tolist() == [[6, 1], [1, 4]]
    d = drivable_metrics(s.compute())
    assert d["iou"] == pytest.approx(4 / 6)
    assert d["miou"] == pytest.approx((4 / 6 + 6 / 8) / 2)
    assert d["acc"] == pytest.approx(10 / 12)
    ln = lane_metrics(s.compute())
    assert ln["acc"] == pytest.approx(4 / 5)  # YOLOP lane accuracy = TP / (TP + FN)
    # accumulation is one matrix over all updates, not a mean of per-update scores
    s.update(np.zeros((2, 2)), np.ones((2, 2)))
    assert s.compute()["iou"] == pytest.approx(4 / 10)


def test_seg_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must match"):
        SegMetrics().update(np.zeros((2, 2)), np.zeros((3, 3)))


def test_a_task_without_labels_is_not_available_and_leaves_the_fitness_alone():
    from compress.metrics import SegMetrics, drivable_metrics, fitness, lane_metrics
    from compress.pipeline import summary_metrics, task_mean

    seg = SegMetrics()
    none = lane_metrics(seg.compute())
    assert none["available"] is False and none["pixels"] == 0
    seg.update(np.ones((4, 4), np.uint8), np.ones((4, 4), np.uint8))
    drv = drivable_metrics(seg.compute())
    assert drv["available"] is True and drv["miou"] == 0.5  # all foreground: fg IoU 1, bg IoU 0
    det = {"map50": 0.6, "recall": 0.8}
    m = {"detection": det, "drivable": drv, "lane": none}
    assert fitness(m) == pytest.approx((0.6 + 0.8 + 0.5) / 3)  # not / 4 with a lane IoU of 0
    assert fitness({**m, "lane": {**none, "available": True}}) == pytest.approx((0.6 + 0.8 + 0.5 + 0.0) / 4)
    s = summary_metrics(
        {"params": 1, "gmacs": 0.1, "detection": {**det, "map50_95": 0.3}, "drivable": drv, "lane": none}
    )
    assert s["lane_available"] is False and task_mean(s) == pytest.approx((0.6 + 0.8 + 0.5) / 3)
