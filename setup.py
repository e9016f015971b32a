"""ament_python package that also installs with plain ``pip install .`` outside ROS."""

from glob import glob

from setuptools import find_packages, setup

package_name = "mtc_perception"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["mtc_perception", "mtc_perception.*", "compress", "compress.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/config/train", glob("config/train/*.yaml")),
        ("share/" + package_name + "/config/compress", glob("config/compress/*.yaml")),
        ("share/" + package_name + "/config/rviz", glob("config/rviz/*.rviz")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy>=1.21", "opencv-python-headless>=4.5", "pyyaml"],
    extras_require={
        # offline half: training, pruning, distillation, export (torch must be pinned by the caller:
        # on a CPU machine install torch==2.13.0 first, or pip pulls the CUDA build)
        "compress": ["torch>=2.1", "tqdm", "torch-pruning>=1.5", "onnx", "onnxruntime", "onnxslim"],
        "onnx": ["onnxruntime"],
        "bag": ["rosbags>=0.10"],
        # what the installed ROS 2 nodes need beyond package.xml's rosdep keys (no rosdep key for
        # either): the default inference backend and the live benchmark's bag reader/player.
        # test/import_guards.py REQUIRED fails `colcon test` loudly without them; docs/ROS.md, "Install"
        "ros": ["onnxruntime", "rosbags>=0.10"],
        # `mtc bench` plots (the report itself needs none of it)
        "bench": ["rosbags>=0.10", "matplotlib"],
        # mcap + mcap-ros2-support: the independent reader the bag tests compare rosbags with
        "test": ["pytest", "pycocotools", "rosbags>=0.10", "onnxruntime", "matplotlib", "mcap", "mcap-ros2-support"],
        # `make lint`: pinned so that a new release cannot turn CI red on unchanged code
        "lint": ["ruff==0.17.6", "mypy==2.4.1"],
    },
    zip_safe=True,
    maintainer="mtc_perception developers",
    maintainer_email="mtc-perception@example.com",
    description="Multi-task camera perception (vehicles, drivable area, lane lines): compression and ROS 2 runtime",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mtc = mtc_perception.cli:main",
            "mtc-compress = compress.cli:main",
            "perception_node = mtc_perception.nodes.perception_node:main",
            "benchmark_node = mtc_perception.nodes.benchmark_node:main",
        ],
    },
)
