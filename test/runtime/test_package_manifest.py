"""package.xml declares what the nodes and launch files import; the install carries launch, config
and RViz files. Both are checked without ROS: an undeclared dependency only shows up on a fresh
robot (rosdep installs nothing for it), a missing data file only after `colcon build`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Python modules that map to a rosdep key of a system package
SYSTEM = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "pytest": "python3-pytest",
    "matplotlib": "python3-matplotlib",
}
#: imported lazily, installed with pip / NVIDIA's installers (no rosdep keys): the backend the user
#: picks (a missing one is reported by the engine registry with the install command), rosbags for
#: the bag tools (never imported by the perception node), and the decompressors bags.py tries when
#: it salvages a damaged compressed MCAP file
BACKENDS = {
    "onnxruntime",
    "onnx",  # optional in `mtc bundle --onnx` (opset, parameter count, external data); ONNX Runtime alone suffices
    "tensorrt",
    "cuda",
    "torch",
    "rosbags",
    "lz4",
    "zstandard",
    "backports",
    "tqdm",
}  # tqdm: a progress bar where installed, log lines otherwise
#: ROS packages that are Python modules of the same name
ROS_PY = {
    "rclpy",
    "rcl_interfaces",
    "ament_index_python",
    "launch",
    "launch_ros",
    "launch_testing",
    "launch_testing_ros",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "vision_msgs",
    "diagnostic_msgs",
    "builtin_interfaces",
}


def _manifest() -> dict[str, set[str]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    deps: dict[str, set[str]] = {}
    for tag in ("depend", "exec_depend", "build_depend", "test_depend"):
        deps[tag] = {e.text.strip() for e in root.findall(tag)}
    return deps


def _imports(files: list[Path]) -> set[str]:
    mods: set[str] = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods.add(node.module.split(".")[0])
    return mods


def _message_packages(files: list[Path]) -> set[str]:
    """Packages of message types named as strings (``"vision_msgs/msg/Detection2D"``), which the
    node imports dynamically."""
    pkgs = set()
    for f in files:
        pkgs |= set(re.findall(r"\"([a-z_]+)/msg/[A-Z]\w*\"", f.read_text()))
    return pkgs


def _launched_packages(files: list[Path]) -> set[str]:
    """``Node(package="rviz2", ...)`` in launch code: a package the launch files start."""
    return {m for f in files for m in re.findall(r"package=\"([a-z0-9_]+)\"", f.read_text())}


def _runtime_files() -> list[Path]:
    return sorted((ROOT / "mtc_perception").rglob("*.py")) + sorted((ROOT / "launch").glob("*.py"))


def test_every_import_of_the_runtime_nodes_and_launch_files_is_declared():
    deps = _manifest()
    run = deps["exec_depend"] | deps["depend"]
    files = _runtime_files()
    stdlib = set(sys.stdlib_module_names) | {"compression"}  # compression.zstd: stdlib from Python 3.14
    needed = set()
    for mod in (
        _imports(files) - stdlib - {"mtc_perception", "compress", "__future__"} - BACKENDS
    ):  # compress: same distribution (mtc demo)
        if mod in SYSTEM:
            needed.add(SYSTEM[mod])
        elif mod in ROS_PY:
            needed.add(mod)
        else:
            raise AssertionError(
                f"mtc_perception imports {mod!r}, which is neither declared in package.xml nor a known "
                "pip-installed backend; add it to package.xml (and to this test's map)"
            )
    needed |= _message_packages(files) | _launched_packages(files)
    missing = needed - run
    assert not missing, f"package.xml lacks <exec_depend> for {sorted(missing)}"
    unused = run - needed
    assert not unused, f"package.xml declares {sorted(unused)} but nothing imports or launches it"


def test_ros_tests_dependencies_are_test_depends():
    deps = _manifest()
    test_files = sorted((ROOT / "test" / "ros").glob("*.py"))
    assert test_files, "the launch_testing tests live in test/ros"
    mods = _imports(test_files) - set(sys.stdlib_module_names) - {"mtc_perception"}
    for mod in mods:
        key = SYSTEM.get(mod, mod)
        assert key in deps["test_depend"] | deps["exec_depend"], (
            f"test/ros imports {mod!r}: declare <test_depend>{key}</test_depend>"
        )


def test_install_carries_launch_config_and_rviz_files(tmp_path):
    """What colcon's ament_python build installs under share/: run setuptools' own install_data."""
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "install_data", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    share = tmp_path / "share" / "mtc_perception"
    for rel in (
        "package.xml",
        "launch/student.launch.py",
        "launch/teacher.launch.py",
        "config/student.yaml",
        "config/teacher.yaml",
        "config/rviz/mtc.rviz",
    ):
        assert (share / rel).is_file(), f"{rel} is not installed"
    assert (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "mtc_perception").is_file()


def test_perception_node_entry_point_and_rviz_layout():
    setup = (ROOT / "setup.py").read_text()
    assert '"perception_node = mtc_perception.nodes.perception_node:main"' in setup
    tree = ast.parse((ROOT / "mtc_perception" / "nodes" / "perception_node.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
    assert "install_scripts=$base/lib/mtc_perception" in (ROOT / "setup.cfg").read_text()  # where `ros2 run` looks
    import yaml

    rviz = yaml.safe_load((ROOT / "config" / "rviz" / "mtc.rviz").read_text())
    topics = {d["Topic"]["Value"]: d for d in rviz["Visualization Manager"]["Displays"]}
    for t in ("/camera/image_raw", "/student/overlay", "/student/drivable_mask", "/student/lane_mask"):
        assert topics[t]["Class"] == "rviz_default_plugins/Image" and topics[t]["Enabled"]


def test_runtime_modules_outside_nodes_do_not_import_ros():
    """ROS-free except nodes/: everything else must import on a machine without ROS."""
    files = [f for f in sorted((ROOT / "mtc_perception").rglob("*.py")) if "nodes" not in f.parts]
    assert not (_imports(files) & ROS_PY)
