"""The benchmark report: a reference model (the teacher) and any number of candidates (the
students) frame by frame -> ``report.json``, ``report.md``, ``frames.csv`` and plots. ROS-free (numpy; OpenCV and
matplotlib only for the pictures), shared by the offline replay (``mtc bench``) and a live ROS
benchmark node, so both write the same shape (DESIGN, "Benchmark report").

How a caller uses it::

    b = ReportBuilder([ModelInfo.from_bundle("teacher", tb, backend), ModelInfo.from_bundle("student", sb, backend)],
                      gt_parts=("detections", "drivable", "lane"))       # () when there are no labels
    for each input frame (in order):
        b.add_frame(stamp_ns, {"teacher": ModelOutput(perception=p, latency_ms=..., stage_ms=...),
                               "student": ModelOutput(error="inference failed: ...")}, image=bgr)
    for each label message:   b.add_ground_truth(stamp_ns, "detections", GroundTruthBoxes(boxes, class_ids))
    b.add_not_reached(n)      # frames of the recording never processed (limit, interrupt, damage)
    b.meta.update(...); b.harness_ms["read"] += ...
    write_report(b, out_dir)

One concept per module: :mod:`.inputs` (what a caller gives), :mod:`.matching` (pairing by
stamp), :mod:`.agreement`, :mod:`.stats`, :mod:`.builder`, :mod:`.files` (csv, plots, json) and
:mod:`.markdown`.

A live node receives the models' outputs as messages:
:func:`mtc_perception.messages.perception_from_messages` turns a
``Detection2DArray`` and the two mono8 masks back into a :class:`~mtc_perception.perceptor.Perception`,
and :class:`StampMatcher` pairs them with their input frame by header stamp (outputs that never
arrive become ``ModelOutput()`` = skipped).

Frame accounting, per model: every frame given to :meth:`ReportBuilder.add_frame` is *processed*
(a perception), *failed* (an error) or *skipped* (neither: dropped / never answered); frames
counted by :meth:`ReportBuilder.add_not_reached` are skipped for every model. Hence
``processed + failed + skipped == total`` by construction.

Agreement (each candidate vs the reference, over the frames both processed; ``agreements.<candidate>``,
and ``agreement`` = the first candidate's, the key of the one-student report): detection mAP50 and recall
with the reference's detections as ground truth (COCO 101-point AP, so a model compared with
itself scores exactly 1; the YOLOv5 integration caps at 0.995), drivable mIoU and lane IoU from
one confusion matrix over all those frames. Ground-truth metrics follow YOLOP's conventions
(``mtc_perception.metrics``) on the detections as deployed (the Perceptor's conf threshold).
"""

from .agreement import detection_f1, frame_agreement
from .builder import SCHEMA, ReportBuilder
from .files import write_report
from .inputs import STAGES, GroundTruthBoxes, ModelInfo, ModelOutput
from .markdown import markdown
from .matching import Group, StampMatcher
from .stats import latency_stats

__all__ = [
    "SCHEMA",
    "STAGES",
    "GroundTruthBoxes",
    "Group",
    "ModelInfo",
    "ModelOutput",
    "ReportBuilder",
    "StampMatcher",
    "detection_f1",
    "frame_agreement",
    "latency_stats",
    "markdown",
    "write_report",
]
