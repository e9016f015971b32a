"""Segmentation averaging of ``mtc_perception.metrics.SegMetrics``: one confusion matrix over the set,
or YOLOP's per-batch scores averaged weighted by batch size; and detection AP50 per class name.
Constructed masks, hand-computed values. numpy only."""

import numpy as np
import pytest

from mtc_perception.metrics import DetectionMetrics, SegMetrics, drivable_metrics, lane_metrics


def _feed(m: SegMetrics) -> SegMetrics:
    # batch 1, two images: a) pred 1100 / target 1000 -> TP 1, FP 1, TN 2; b) all background -> TN 4
    m.update(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    m.update(np.zeros(4), np.zeros(4))
    m.end_batch()
    # batch 2, one image: c) pred 0000 / target 0011 -> FN 2, TN 2 (no true foreground found)
    m.update(np.zeros(4), np.array([0, 0, 1, 1]))
    m.end_batch()
    return m


def test_set_and_batch_averages_by_hand() -> None:
    s = _feed(SegMetrics("set")).compute()
    # whole set: TP 1, FP 1, FN 2, TN 8
    assert s["iou"] == pytest.approx(1 / 4) and s["recall"] == pytest.approx(1 / 3)
    assert s["acc"] == pytest.approx(9 / 12) and s["miou"] == pytest.approx((1 / 4 + 8 / 11) / 2)
    assert s["average"] == "set" and s["pixels"] == 12 and s["available"]
    b = _feed(SegMetrics("batch")).compute()
    # batch 1 (TP 1, FP 1, TN 6): IoU 1/2, background IoU 6/7, acc 7/8, recall 1; weight 2
    # batch 2 (FN 2, TN 2): IoU 0 (YOLOP's nan -> 0 rule does not apply: 0/2), bg IoU 2/4, acc 1/2, recall 0; weight 1
    assert b["iou"] == pytest.approx((2 * 0.5 + 0) / 3)
    assert b["recall"] == pytest.approx((2 * 1 + 0) / 3)
    assert b["acc"] == pytest.approx((2 * 7 / 8 + 1 / 2) / 3)
    assert b["miou"] == pytest.approx((2 * (0.5 + 6 / 7) / 2 + (0 + 0.5) / 2) / 3)
    assert b["average"] == "batch" and b["batches"] == 2 and b["pixels"] == 12
    assert lane_metrics(b)["acc"] == b["recall"] and drivable_metrics(b)["average"] == "batch"
    # one batch holding everything: the batch mean is the set's value
    one = SegMetrics("batch")
    one.update(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    one.update(np.zeros(4), np.zeros(4))
    one.update(np.zeros(4), np.array([0, 0, 1, 1]))
    got = one.compute()
    assert {k: got[k] for k in ("iou", "recall", "acc", "miou")} == pytest.approx(
        {k: s[k] for k in ("iou", "recall", "acc", "miou")}
    )
    with pytest.raises(ValueError, match="segmentation average 'image' unknown; use one of set, batch"):
        SegMetrics("image")


def test_a_batch_without_foreground_scores_zero() -> None:
    m = SegMetrics("batch")
    m.update(np.array([1, 0]), np.array([1, 0]))  # perfect: IoU 1
    m.end_batch()
    m.update(np.zeros(2), np.zeros(2))  # no foreground anywhere: IoU 0, recall 0 (YOLOP's nan -> 0)
    m.end_batch()
    r = m.compute()
    assert r["iou"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5) and r["acc"] == 1.0
    assert SegMetrics("set").compute()["available"] is False


def test_ap50_per_class_name() -> None:
    m = DetectionMetrics(3, class_names=("car", "truck", "bus"))
    # car: found (IoU 1); truck: one box, predicted as car (class mismatch -> missed); bus: no label
    m.update(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]),
        np.array([0.9, 0.8]),
        np.array([0, 0]),
        np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]),
        np.array([0, 1]),
    )
    r = m.compute()
    assert r["class_names"] == ["car", "truck", "bus"] and r["num_gt_per_class"] == [1, 1, 0]
    by = r["ap50_by_class"]
    assert list(by) == ["car", "truck", "bus"] and by["truck"] == 0.0 and by["bus"] is None
    # car: TP at rank 1 (P 1, R 1), FP at rank 2 (P 1/2): the envelope is 1 up to recall 1
    assert by["car"] == pytest.approx(r["ap50_per_class"][0]) and by["car"] > 0.99
    assert r["map50"] == pytest.approx((by["car"] + 0.0) / 2)  # averaged over the classes present
    assert DetectionMetrics(2).compute()["class_names"] == ["0", "1"]
    with pytest.raises(ValueError, match="1 class names"):
        DetectionMetrics(2, class_names=("car",))
