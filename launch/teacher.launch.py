"""The uncompressed teacher, for side-by-side comparison with the student:
``ros2 launch mtc_perception teacher.launch.py bundle:=/path/to/bundles/teacher``.

Arguments (``ros2 launch mtc_perception teacher.launch.py --show-args``): bundle, image_topic,
input_transport, backend, namespace (teacher), params_file (config/teacher.yaml), use_rviz, log_level.
"""

from mtc_perception.nodes.launch_common import perception_launch


def generate_launch_description():
    return perception_launch("teacher")
