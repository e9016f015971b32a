"""The uncompressed teacher, for side-by-side comparison with the student:
``ros2 launch mtc_perception teacher.launch.py bundle:=/path/to/bundles/teacher``.

Arguments (``ros2 launch mtc_perception teacher.launch.py --show-args``): every node parameter under its
own name (bundle, image_topic, input_transport, backend, reliability, conf_threshold, ...; empty keeps
params_file's value, an unknown value stops the launch), namespace (teacher), params_file
(config/teacher.yaml), use_rviz, log_level, dds_config (CYCLONEDDS_URI, e.g. cyclonedds.xml).
"""

from mtc_perception.nodes.launch_common import perception_launch


def generate_launch_description():
    return perception_launch("teacher")
