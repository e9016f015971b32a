"""mtc_perception: the on-vehicle runtime (ROS-free except ``nodes/``).

Importing this package needs only numpy (and OpenCV for image operations): torch, onnxruntime,
tensorrt and rclpy are imported lazily by the feature that needs them.
"""

__version__ = "0.1.0"
