"""Runtime geometry and NMS (letterbox <-> restore, class-aware NMS) and the torch-free runtime on
the committed tiny bundle. Needs no torch: `make test` also runs this file under numpy 1.x and
OpenCV 4.6 (the Python stack of the ROS 2 distributions)."""

import cv2
import numpy as np
import pytest

from mtc_perception.processing import Letterbox, letterbox_image, nms, restore_mask, select_detections

# ---------------------------------------------------------------------------------------------
# geometry and NMS


@pytest.mark.parametrize(
    "src", [(1280, 720), (720, 1280), (640, 360), (333, 517), (1, 1), (1920, 1080), (100, 3000), (641, 385)]
)
@pytest.mark.parametrize("dst", [(640, 384), (128, 96), (320, 320)])
def test_letterbox_round_trip_is_exact(src, dst):
    lb = Letterbox(src, dst)
    w, h = src
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, (50, 4)) * [w, h, w, h]
    boxes = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])], 1)
    assert np.allclose(lb.to_image(lb.to_network(boxes)), boxes, atol=1e-9)
    top, bottom, left, right = lb.valid
    assert (right - left, bottom - top) == lb.new and 0 <= left and right <= dst[0] and 0 <= top and bottom <= dst[1]
    assert (
        abs(lb.new[0] / w - lb.new[1] / h) <= 1.0 / min(w, h) + 1.0 / min(lb.new) + 1e-9 or min(lb.new) == 1
    )  # aspect kept
    # the image corners land on the edges of the valid region
    net = lb.to_network(np.array([[0, 0, w, h]]))[0]
    assert np.allclose(net, [left, top, right, bottom], atol=0.51)


@pytest.mark.parametrize("src", [(64, 48), (32, 24), (128, 96)])
def test_mask_restore_exact_at_integer_scales(src):
    rng = np.random.default_rng(1)
    mask = (rng.random((src[1], src[0])) > 0.5).astype(np.uint8)
    img = np.zeros((src[1], src[0], 3), np.uint8)
    _, (net_mask,), lb = letterbox_image(img, (128, 96), masks=[mask])
    assert np.array_equal(restore_mask(net_mask, lb), mask)


@pytest.mark.parametrize("src", [(1280, 720), (333, 517), (700, 200)])
def test_mask_restore_differs_only_on_edges(src):
    w, h = src
    yy, xx = np.mgrid[0:h, 0:w]
    mask = (((xx - w / 2) ** 2 / (w / 3) ** 2 + (yy - h / 2) ** 2 / (h / 3) ** 2) < 1).astype(np.uint8)  # an ellipse
    _, (net_mask,), lb = letterbox_image(np.zeros((h, w, 3), np.uint8), (640, 384), masks=[mask])
    back = restore_mask(net_mask, lb)
    assert back.shape == mask.shape
    diff = back != mask
    edge = cv2.dilate(
        cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)),
        np.ones((2 * int(1 / lb.ratio) + 3,) * 2, np.uint8),
    )
    assert not (diff & (edge == 0)).any()  # disagreement only within a pixel of the boundary


def _reference_nms(boxes, scores, classes, thr):
    """Independent reference: plain-Python greedy NMS, per class."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(classes[i] != classes[k] or iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_agrees_with_reference(seed):
    rng = np.random.default_rng(seed)
    n = 300
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.permutation(n) / n + 0.001  # distinct scores: a unique greedy order
    classes = rng.integers(0, 3, n)
    for thr in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, thr, class_ids=classes, max_det=1000).tolist() == _reference_nms(
            boxes, scores, classes, thr
        )


@pytest.mark.parametrize("conf", [0.0, 0.1, 0.25, 0.6])
def test_select_detections_equals_plain_definition(conf):
    """The objectness prefilter is exact: same boxes as scoring every row, then thresholding."""
    rng = np.random.default_rng(3)
    n, nc = 4000, 3
    xy, wh = rng.uniform(0, 600, (n, 2)), rng.uniform(4, 80, (n, 2))
    pred = np.concatenate([xy, wh, rng.uniform(0, 1, (n, 1)) ** 2, rng.uniform(0, 1, (n, nc))], 1).astype(np.float32)
    cls = pred[:, 5:].argmax(1)
    score = pred[:, 4] * pred[np.arange(n), 5 + cls]
    keep = np.flatnonzero(score > conf)
    boxes = np.concatenate([pred[keep, :2] - pred[keep, 2:4] / 2, pred[keep, :2] + pred[keep, 2:4] / 2], 1)
    ref = _reference_nms(boxes.tolist(), score[keep].tolist(), cls[keep].tolist(), 0.45)[:100]
    b, s, c = select_detections(pred, conf, 0.45, max_det=100)
    assert len(ref) > 0
    np.testing.assert_array_equal(b, boxes[ref])
    np.testing.assert_array_equal(s, score[keep][ref])
    np.testing.assert_array_equal(c, cls[keep][ref])


def test_runtime_on_the_tiny_bundle_without_torch():
    """The whole frame path (decode, letterbox, ONNX Runtime, decode, NMS, restore) on the
    committed bundle; in the numpy-1.x environment torch is not even installed."""
    from pathlib import Path

    from mtc_perception.perceptor import Perceptor
    from mtc_perception.viz import draw

    data = Path(__file__).resolve().parents[1] / "data"
    p = Perceptor(data / "tiny_bundle", backend="onnxruntime", conf=0.01)
    frame = cv2.imread(str(data / "frame.jpg"))
    out = p(frame)
    jpeg = p(cv2.imencode(".png", frame)[1].tobytes())  # bytes in: the same frame decoded by the Perceptor
    assert out.drivable.shape == frame.shape[:2] and out.lane.dtype == np.uint8 and len(out.boxes) > 0
    assert np.array_equal(out.drivable, jpeg.drivable) and np.allclose(out.boxes, jpeg.boxes)
    assert draw(frame, out).shape == frame.shape


# ---------------------------------------------------------------------------------------------
# the Perceptor's fast paths agree exactly with the plain definitions


@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("dtype", [np.uint8, np.bool_])
def test_upscale_nearest_equals_opencv(k, dtype):
    from mtc_perception.processing import upscale_nearest

    rng = np.random.default_rng(k)
    a = (rng.random((37, 53)) > 0.5).astype(np.uint8)
    a[0, 0], a[-1, -1] = 1, 0
    out = upscale_nearest(a.astype(dtype), k)
    assert out.dtype == dtype and out.shape == (37 * k, 53 * k)
    assert np.array_equal(out.view(np.uint8), cv2.resize(a, (53 * k, 37 * k), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("src", [(1280, 720), (2560, 1440), (1920, 1080), (640, 360), (333, 517), (700, 200)])
def test_restore_mask_fast_path_equals_opencv(src):
    lb = Letterbox(src, (640, 384))
    mask = (np.random.default_rng(0).random((384, 640)) > 0.5).astype(np.uint8)
    top, bottom, left, right = lb.valid
    ref = cv2.resize(np.ascontiguousarray(mask[top:bottom, left:right]), lb.src, interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(restore_mask(mask, lb), ref)


@pytest.mark.parametrize("src", [(1280, 720), (1920, 1080), (640, 384), (333, 517), (700, 200), (100, 3000), (5, 4)])
@pytest.mark.parametrize("rgb", [True, False])
def test_preprocessor_equals_training_letterbox(src, rgb):
    """The Perceptor's input is bit-identical to training's letterbox (processing.letterbox_image)
    followed by the colour order and scale, whatever the frame size."""
    from types import SimpleNamespace

    from mtc_perception.bundle import InputSpec
    from mtc_perception.perceptor import Preprocessor

    class _Bundle:
        input_size = (640, 384)
        spec = SimpleNamespace(
            input=InputSpec(
                name="images",
                height=384,
                width=640,
                pad_value=114,
                color="RGB" if rgb else "BGR",
                scale=1 / 255,
                mean=(0.1, 0.2, 0.3),
                std=(0.5, 0.6, 0.7),
            )
        )

    rng = np.random.default_rng(src[0])
    frames = [rng.integers(0, 256, (src[1], src[0], 3), dtype=np.uint8) for _ in range(2)]
    frames.append(frames[0][:, ::-1])  # a non-contiguous view
    x, lbs = Preprocessor(_Bundle())(frames)
    for f, xi, lb in zip(frames, x, lbs):
        img, _, ref_lb = letterbox_image(f, (640, 384), 114)
        assert lb.valid == ref_lb.valid
        ref = img[..., ::-1] if rgb else img
        ref = (
            ref.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255) - np.float32([[[0.1]], [[0.2]], [[0.3]]])
        ) / np.float32([[[0.5]], [[0.6]], [[0.7]]])
        assert np.allclose(xi, ref, atol=1e-6, rtol=0)
