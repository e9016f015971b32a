"""The compressed student: ``ros2 launch mtc_perception student.launch.py bundle:=/path/to/bundles/student``.

Arguments (``ros2 launch mtc_perception student.launch.py --show-args``): every node parameter under its
own name (bundle, image_topic, input_transport, backend, reliability, conf_threshold, ...; empty keeps
params_file's value, an unknown value stops the launch), namespace (student), params_file
(config/student.yaml), use_rviz, log_level, dds_config (CYCLONEDDS_URI, e.g. cyclonedds.xml).
"""

from mtc_perception.nodes.launch_common import perception_launch


def generate_launch_description():
    return perception_launch("student")
