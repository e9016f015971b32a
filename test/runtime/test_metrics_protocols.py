"""The two detection-metric protocols of ``mtc_perception.metrics`` (issue 20): ``"default"``
(COCO-style matching, pycocotools' tie rule) and ``"yolop"`` (YOLOP's validate(): its matching,
its AP closing, its clipping). Each convention is isolated by a constructed case whose result is
computed by hand in the comments. numpy only (no torch): runs on the ROS 2 machines too.

Facts the hand computations use (all boxes have integer coordinates, so IoUs are exact ratios):

* IoU thresholds: 0.50, 0.55, ..., 0.95 (10).
* ``"coco"`` AP (pycocotools) = mean over the 101 recall thresholds r = 0, 0.01, ..., 1 of the
  precision envelope at the first curve point with recall >= r (0 past the last recall).
* ``"yolov5"`` / ``"yolop"`` AP = trapezoid over x = 0, 0.01, ..., 1 of np.interp(x, mrec, mpre),
  mrec = [0, recall..., end], mpre = envelope of [1, precision..., 0]; end = 1 (yolov5) or
  last recall + 0.001 (yolop). Where several curve points share a recall, np.interp at exactly
  that recall takes the LAST of their values.
"""

import numpy as np
import pytest

from mtc_perception.metrics import IOU_THRESHOLDS, DetectionMetrics

# recall points of the 101-point grids at or below 0.5: 0, 0.01, ..., 0.5
N_LE_HALF = 51


def _run(images, protocol="default", ap_method=None, nc=1):
    dm = DetectionMetrics(nc, ap_method, protocol=protocol)
    for im in images:
        dm.update(*im)
    return dm.compute()


def _one(preds, gts, image_size=None):
    """One image, class 0: preds = [(box, score)], gts = [box]."""
    boxes = np.array([b for b, _ in preds], float).reshape(-1, 4)
    scores = np.array([s for _, s in preds], float)
    gt = np.array(gts, float).reshape(-1, 4)
    return (boxes, scores, np.zeros(len(boxes), int), gt, np.zeros(len(gt), int), image_size)


# ---------------------------------------------------------------------------------------------
# ties: pycocotools takes the LAST of the ground-truth boxes at the same best IoU

A = [0, 0, 10, 10]
B = [4, 0, 14, 10]
D1 = ([2, 0, 12, 10], 0.9)  # IoU(D1, A) = 8*10 / (100+100-80) = 2/3 = IoU(D1, B): a tie
D2 = ([0, 0, 10, 10], 0.8)  # IoU(D2, A) = 1; IoU(D2, B) = 6*10 / (100+100-60) = 3/7 < 0.5


def test_default_tie_takes_the_last_box_like_pycocotools():
    # ground truth in the order A, B. D1 ties between A and B and takes the last, B; D2 then
    # takes A (IoU 1): two hits -> recall 0.5, 1 at precision 1, 1 -> COCO AP50 = 1.
    # (The first-box rule, np.argmax, gave D1 -> A, and D2 had only B at 3/7 left: a false
    # positive -> recall 0.5, 0.5; precision 1, 0.5 -> 51 recall thresholds <= 0.5 at 1, the
    # other 50 at 0 -> 51/101 = 0.505.)
    r = _run([_one([D1, D2], [A, B])])
    assert r["map50_coco"] == 1.0
    assert r["recall"] == 1.0 and r["precision"] == 1.0
    # mAP50:95: D1's 2/3 passes thresholds 0.50..0.65 (4 of them: AP 1 each); at 0.70..0.95
    # (6) only D2 hits: tp F, T -> recall 0, 0.5; precision 0, 0.5; envelope 0.5, 0.5 ->
    # 51 thresholds (r <= 0.5) at 0.5 -> 25.5/101
    assert r["map50_95_coco"] == pytest.approx((4 * 1 + 6 * 25.5 / 101) / 10, abs=1e-12)
    # the rule is the order of the ground truth: listed B, A, the last is A, D1 takes it, D2 is
    # a false positive (B at 3/7) -> 51/101 as above
    assert _run([_one([D1, D2], [B, A])])["map50_coco"] == pytest.approx(N_LE_HALF / 101, abs=1e-12)
    # yolov5 integration of the A, B case: points (0.5, 1), (1, 1), closing (1, 0); the grid
    # value is 1 for x < 1 and, at x = 1, the last value at recall 1: the closing 0 ->
    # 99 intervals * 0.01 * 1 + 0.01 * (1 + 0) / 2 = 0.995
    assert r["map50"] == pytest.approx(0.995, abs=1e-12)


def _pycocotools_ap(images, nc=1):
    """(AP at IoU 0.5, AP over 0.5:0.95) from pycocotools itself."""
    pytest.importorskip("pycocotools", reason="cross-check against pycocotools, present only where installed")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    imgs, anns, dets = [], [], []
    for i, (p, s, pc, gt, gc, _) in enumerate(images):
        imgs.append({"id": i, "width": 200, "height": 200})
        for b, c in zip(gt, gc):
            xywh = [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0, "bbox": xywh}
            anns.append({**ann, "area": xywh[2] * xywh[3]})
        for b, c, sc in zip(p, pc, s):
            xywh = [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
            dets.append({"image_id": i, "category_id": int(c), "score": float(sc), "bbox": xywh})
    coco = COCO()
    coco.dataset = {"images": imgs, "annotations": anns, "categories": [{"id": c} for c in range(nc)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, K): all areas, 100 detections
    ap = prec.mean(1)
    return float(ap[0].mean()), float(ap.mean())


@pytest.mark.parametrize("gts", [[A, B], [B, A]], ids=["A,B", "B,A"])
def test_tie_rule_agrees_with_pycocotools(gts):
    images = [_one([D1, D2], gts)]
    ap50, ap = _pycocotools_ap(images)
    r = _run(images)
    assert r["map50_coco"] == pytest.approx(ap50, abs=1e-12)
    assert r["map50_95_coco"] == pytest.approx(ap, abs=1e-12)


def test_yolop_tie_takes_the_first_box():
    # YOLOP: torch.max(1) -> the first box at the best IoU. Ground truth A, B: D1 -> A; D2's best
    # is A (IoU 1), already taken -> false positive. recall 0.5, 0.5; precision 1, 0.5.
    # YOLOP's AP: mrec = [0, 0.5, 0.5, 0.501], envelope [1, 1, 0.5, 0]; grid: 1 at x <= 0.49,
    # 0.5 at x = 0.5 (last value at recall 0.5), 0 from x = 0.51 ->
    # 0.49 + 0.01 * (1 + 0.5) / 2 + 0.01 * (0.5 + 0) / 2 = 0.49 + 0.0075 + 0.0025 = 0.5
    r = _run([_one([D1, D2], [A, B])], "yolop")
    assert r["map50"] == pytest.approx(0.5, abs=1e-12)
    assert r["recall"] == 0.5 and r["precision"] == 0.5
    # the pycocotools numbers beside it keep pycocotools' own rule (D1 -> B, both hit)
    assert r["map50_coco"] == 1.0
    # ground truth B, A: the first is B; D1 -> B, D2 -> A: recall 0.5, 1 at precision 1, 1;
    # the closing point is at 1.001, so the grid is 1 everywhere, x = 1 included -> AP 1
    assert _run([_one([D1, D2], [B, A])], "yolop")["map50"] == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# closing of the precision-recall curve


def test_closing_yolov5_vs_yolop():
    # two boxes, one exact detection: recall 0.5, precision 1 (same matching under both)
    half = [_one([([0, 0, 10, 10], 0.9)], [[0, 0, 10, 10], [20, 0, 30, 10]])]
    # yolov5: mrec [0, 0.5, 1], envelope [1, 1, 0]: 1 up to 0.5, then a line down to (1, 0):
    # 0.5 + 0.5 * 0.5 / 2 = 0.75
    assert _run(half, "default")["map50"] == pytest.approx(0.75, abs=1e-12)
    # yolop: mrec [0, 0.5, 0.501]: 1 up to 0.5, 0 from 0.51: 0.5 + 0.01 * (1 + 0) / 2 = 0.505
    assert _run(half, "yolop")["map50"] == pytest.approx(0.505, abs=1e-12)
    assert _run(half, "default", "yolop")["map50"] == pytest.approx(0.505, abs=1e-12)  # integration alone
    # pycocotools: 51 thresholds at 1, 50 at 0
    assert _run(half, "yolop")["map50_coco"] == pytest.approx(N_LE_HALF / 101, abs=1e-12)
    # a perfect detection: yolov5's closing (1, 0) makes the grid's last value 0 -> 0.995;
    # yolop closes at 1.001, the grid is 1 throughout -> 1.0
    perfect = [_one([([0, 0, 10, 10], 0.9)], [[0, 0, 10, 10]])]
    assert _run(perfect, "default")["map50"] == pytest.approx(0.995, abs=1e-12)
    assert _run(perfect, "yolop")["map50"] == 1.0
    assert _run(perfect, "yolop")["map50_95"] == 1.0  # IoU 1 > 0.95


# ---------------------------------------------------------------------------------------------
# matching: YOLOP has no fallback to the second-best box, decides once at IoU 0.5, and is strict


def test_yolop_has_no_fallback_to_the_second_best_box():
    g1, g2 = [0, 0, 10, 10], [3, 0, 13, 10]
    d1 = ([0, 0, 10, 10], 0.9)  # IoU g1 = 1, g2 = 7*10 / 130 = 0.538
    d2 = ([1, 0, 11, 10], 0.8)  # IoU g1 = 9*10 / 110 = 0.818, g2 = 8*10 / 120 = 0.667
    images = [_one([d1, d2], [g1, g2])]
    # default: d1 -> g1; d2 falls back to g2 (0.667) at thresholds 0.50..0.65 -> AP 1 there;
    # at 0.70..0.95 d2 is a false positive: tp T, F -> recall 0.5, 0.5 -> 51/101
    d = _run(images, "default", "coco")
    assert d["map50"] == 1.0 and d["recall"] == 1.0
    assert d["map50_95"] == pytest.approx((4 + 6 * N_LE_HALF / 101) / 10, abs=1e-12)
    # yolop: d2's best is g1 (0.818), taken -> false positive at every threshold:
    # recall 0.5, 0.5; precision 1, 0.5 -> YOLOP AP 0.5 (worked out in the tie test above),
    # the same at every threshold since d1's IoU 1 > 0.95
    y = _run(images, "yolop")
    assert y["map50"] == pytest.approx(0.5, abs=1e-12)
    assert y["map50_95"] == pytest.approx(0.5, abs=1e-12)
    assert y["recall"] == 0.5 and y["precision"] == 0.5
    assert y["map50_coco"] == 1.0  # pycocotools' numbers beside it: its own matching
    assert y["map50_95_coco"] == pytest.approx(d["map50_95"], abs=1e-12)


def test_yolop_matches_once_at_iou_05_for_every_threshold():
    g = [0, 0, 10, 10]
    d1 = ([0, 0, 10, 15], 0.9)  # IoU = 100 / 150 = 2/3
    d2 = ([0, 0, 10, 10], 0.8)  # IoU = 1
    images = [_one([d1, d2], [g])]
    # default, per threshold: 0.50..0.65 -> d1 hits, d2 is a duplicate: recall 1, 1 at
    # precision 1, 0.5 -> AP 1; 0.70..0.95 -> d1 misses, d2 hits: recall 0, 1, precision 0, 0.5,
    # envelope 0.5 -> AP 0.5. mAP50:95 = (4 * 1 + 6 * 0.5) / 10 = 0.7
    assert _run(images, "default", "coco")["map50_95"] == pytest.approx(0.7, abs=1e-12)
    # yolop: d1 takes g at 0.5 (2/3 > 0.5) and counts at thresholds where 2/3 > t (0.50..0.65);
    # g stays taken, so d2 is a false positive everywhere, even at 0.95 where it alone would hit.
    # 0.50..0.65: recall 1, 1; precision 1, 0.5; mrec [0, 1, 1, 1.001], envelope [1, 1, 0.5, 0]:
    # grid 1 for x < 1, at x = 1 the last value at recall 1, 0.5 -> 0.99 + 0.01 * 1.5 / 2 = 0.9975
    # 0.70..0.95: no hit, recall 0 -> AP 0. mAP50:95 = 4 * 0.9975 / 10 = 0.399
    y = _run(images, "yolop")
    assert y["map50"] == pytest.approx(0.9975, abs=1e-12)
    assert y["map50_95"] == pytest.approx(0.399, abs=1e-12)
    assert y["map50_95_coco"] == pytest.approx(0.7, abs=1e-12)


def test_yolop_iou_comparisons_are_strict():
    # IoU exactly 0.5: 10*10 / (10*20) = 100 / 200
    images = [_one([([0, 0, 10, 20], 0.9)], [[0, 0, 10, 10]])]
    # default (pycocotools, >=): a hit at 0.50 only -> AP50 1, mAP50:95 = 1 / 10
    d = _run(images, "default", "coco")
    assert d["map50"] == 1.0 and d["map50_95"] == pytest.approx(0.1, abs=1e-12)
    # yolop (ious > 0.5): no hit at all
    y = _run(images, "yolop")
    assert y["map50"] == 0.0 and y["map50_95"] == 0.0 and y["recall"] == 0.0
    assert y["map50_coco"] == 1.0


# ---------------------------------------------------------------------------------------------
# clipping to the image (YOLOP: scale_coords -> clip_coords, predictions and ground truth)


def test_yolop_clips_predictions_and_ground_truth_to_the_image():
    size = (100, 50)  # (w, h)
    # image 1: the prediction runs 30 px past the right edge: unclipped IoU with the box
    # = 20*20 / (50*20) = 0.4 (a miss); clipped to x <= 100 it equals the box: IoU 1
    im1 = _one([([80, 0, 130, 20], 0.9)], [[80, 0, 100, 20]], size)
    # image 2: the ground truth runs past the right and bottom edges; the prediction is its
    # visible part: unclipped IoU = 10*10 / (20*20) = 0.25; both clipped: IoU 1
    im2 = _one([([90, 40, 100, 50], 0.8)], [[90, 40, 110, 60]], size)
    # yolop with image_size: two hits, recall 0.5, 1 at precision 1 -> AP 1 (closing at 1.001)
    y = _run([im1, im2], "yolop")
    assert y["map50"] == 1.0 and y["map50_coco"] == 1.0 and y["recall"] == 1.0
    # without image_size nothing is clipped: two misses
    no_size = [im[:5] for im in (im1, im2)]
    assert _run(no_size, "yolop")["map50"] == 0.0
    # the default protocol does not clip (pycocotools takes the boxes as given)
    assert _run([im1, im2], "default")["map50"] == 0.0


# ---------------------------------------------------------------------------------------------
# the default protocol is unchanged where there are no ties


def _no_tie_case(seed=7, n_img=30, nc=2):
    """Random float boxes (some missed, some duplicated, some spurious) from the legacy
    RandomState, whose stream numpy keeps stable across versions."""
    rs = np.random.RandomState(seed)
    images = []
    for _ in range(n_img):
        m = rs.randint(0, 6)
        xy, wh = rs.uniform(0, 300, (m, 2)), rs.uniform(4, 90, (m, 2))
        gt, gc = np.concatenate([xy, xy + wh], 1), rs.randint(0, nc, m)
        keep = rs.uniform(size=m) < 0.8
        p = gt[keep] + rs.normal(0, 4, (int(keep.sum()), 4))
        pc = gc[keep]
        dup = rs.uniform(size=len(p)) < 0.3
        p = np.concatenate([p, p[dup] + rs.normal(0, 6, (int(dup.sum()), 4))])
        pc = np.concatenate([pc, pc[dup]])
        k = rs.randint(0, 4)
        xy2, wh2 = rs.uniform(0, 300, (k, 2)), rs.uniform(4, 90, (k, 2))
        p = np.concatenate([p, np.concatenate([xy2, xy2 + wh2], 1)])
        pc = np.concatenate([pc, rs.randint(0, nc, k)])
        p[:, 2:] = np.maximum(p[:, 2:], p[:, :2] + 1)
        s = rs.uniform(0.001, 1, len(p))
        images.append((p, s, pc, gt, gc))
    return images


def test_default_protocol_unchanged_without_ties():
    from mtc_perception.processing import box_iou

    images = _no_tie_case()
    for p, _, pc, gt, gc in images:  # no detection has two boxes of its class at the same IoU
        iou = box_iou(p, gt)
        for d in range(len(p)):
            same = iou[d][(gc == pc[d]) & (iou[d] > 0)]
            assert len(np.unique(same)) == len(same)
    # the values the implementation before the tie fix and the protocols gave on this case
    before = {
        "yolov5": {"map50": 0.4705702882477076, "map50_95": 0.23939876854091893},
        "coco": {"map50": 0.4101659726732821, "map50_95": 0.18688126917254622},
    }
    for ap_method, v in before.items():
        r = _run(images, ap_method=ap_method, nc=2)
        assert r["protocol"] == "default" and r["ap_method"] == ap_method
        assert r["map50"] == pytest.approx(v["map50"], abs=1e-12)
        assert r["map50_95"] == pytest.approx(v["map50_95"], abs=1e-12)
        assert r["map50_coco"] == pytest.approx(0.4101659726732821, abs=1e-12)
        assert r["map50_95_coco"] == pytest.approx(0.18688126917254622, abs=1e-12)
        assert r["recall"] == pytest.approx(0.7507188039102932, abs=1e-12)
        assert r["precision"] == pytest.approx(0.47957516339869277, abs=1e-12)
        assert r["best_f1"]["f1"] == pytest.approx(0.5867087756074689, abs=1e-12)
        assert (r["num_gt"], r["num_pred"], r["images"]) == (84, 131, 30)
    # the default of DetectionMetrics(nc) is still the yolov5 integration
    assert _run(images, nc=2)["ap_method"] == "yolov5"


def test_default_hand_computed_case():
    # one image: hit (0.9), false positive (0.8), hit (0.7) on two boxes
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    preds = [([0, 0, 10, 10], 0.9), ([50, 50, 60, 60], 0.8), ([20, 20, 30, 30], 0.7)]
    r = _run([_one(preds, gt)])
    # recall/precision: (0.5, 1), (0.5, 0.5), (1, 2/3); envelope 1, 2/3, 2/3.
    # coco: 51 thresholds (r <= 0.5) at 1, 50 at 2/3
    assert r["map50_coco"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    # yolov5: grid 1 at x <= 0.49, 2/3 at x = 0.5 (the last value at recall 0.5) up to 0.99,
    # 0 at x = 1 (closing): 0.49 + 0.01 * (1 + 2/3) / 2 + 0.49 * 2/3 + 0.01 * (2/3) / 2
    assert r["map50"] == pytest.approx(0.49 + 0.005 * 5 / 3 + 0.49 * 2 / 3 + 0.005 * 2 / 3, abs=1e-12)
    assert r["recall"] == 1.0 and r["precision"] == pytest.approx(2 / 3)


def test_arguments():
    assert DetectionMetrics(1, "coco").compute()["ap_method"] == "coco"  # positional ap_method as before
    assert DetectionMetrics(1, protocol="yolop").compute()["ap_method"] == "yolop"
    assert DetectionMetrics(1, "yolov5", protocol="yolop").compute()["protocol"] == "yolop"
    with pytest.raises(ValueError, match="protocol"):
        DetectionMetrics(1, protocol="coco")
    with pytest.raises(ValueError, match="AP method"):
        DetectionMetrics(1, "trapz")
    assert len(IOU_THRESHOLDS) == 10
