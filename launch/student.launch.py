"""The compressed student: ``ros2 launch mtc_perception student.launch.py bundle:=/path/to/bundles/student``.

Arguments (``ros2 launch mtc_perception student.launch.py --show-args``): bundle, image_topic,
input_transport, backend, namespace (student), params_file (config/student.yaml), use_rviz, log_level.
"""

from mtc_perception.nodes.launch_common import perception_launch


def generate_launch_description():
    return perception_launch("student")
