"""The launch files' arguments, without ROS: every node parameter is a launch argument, converted and
checked as the node checks it (``reliability:=reliable`` used to be silently ignored), and
``dds_config:=`` points CYCLONEDDS_URI at the shipped Cyclone DDS configuration, whose receive buffer
holds two 1920x1080 bgr8 frames."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mtc_perception.dds import SHIPPED, DdsConfigError, cyclonedds_uri, parse_size, receive_buffer_min
from mtc_perception.node_core import PARAMETERS, ParamError, launch_overrides

ROOT = Path(__file__).resolve().parents[2]
FULL_HD_BGR8 = 1920 * 1080 * 3


def test_every_node_parameter_converts_from_its_launch_text():
    got = launch_overrides(
        PARAMETERS,
        {
            "reliability": "reliable",
            "conf_threshold": "0.5",
            "max_detections": "20",
            "publish_overlay": "False",
            "class_filter": "[vehicle, 'person']",
            "threads": "2",
            "bundle": "",  # empty: the parameter file's value, left out
        },
    )
    assert got == {
        "reliability": "reliable",
        "conf_threshold": 0.5,
        "max_detections": 20,
        "publish_overlay": False,
        "class_filter": ["vehicle", "person"],
        "threads": 2,
    }
    assert launch_overrides(PARAMETERS, {"class_filter": "vehicle,person"}) == {"class_filter": ["vehicle", "person"]}
    assert launch_overrides(PARAMETERS, {}) == {}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"reliability": "relaible"}, r"reliability' = 'relaible': expected one of \['best_effort', 'reliable'\]"),
        ({"backend": "cuda"}, "'backend' = 'cuda': expected one of"),
        ({"conf_threshold": "high"}, "conf_threshold:='high': expected a number"),
        ({"conf_threshold": "1.5"}, r"'conf_threshold' = 1.5: expected a value in \[0.0, 1.0\]"),
        ({"max_detections": "2.5"}, "max_detections:='2.5': expected an integer"),
        ({"publish_overlay": "yes"}, "publish_overlay:='yes': expected true or false"),
        ({"reliabilty": "reliable"}, r"unknown launch argument\(s\) \['reliabilty'\]"),
    ],
)
def test_a_value_the_node_would_refuse_stops_the_launch(given, message):
    with pytest.raises(ParamError, match=message):
        launch_overrides(PARAMETERS, given)


def _declared(path: Path) -> set[str]:
    """String keys of the launch file's argument tables and literal DeclareLaunchArgument names."""
    tree = ast.parse(path.read_text())
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DeclareLaunchArgument" and n.args:
            if isinstance(n.args[0], ast.Constant):
                names.add(n.args[0].value)
        if isinstance(n, ast.Dict):
            names |= {k.value for k in n.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return names


def test_student_and_teacher_launch_declare_every_parameter_and_dds_config():
    common = ROOT / "mtc_perception" / "nodes" / "launch_common.py"
    src = common.read_text()
    # OVERRIDES is built from the node's table, and every override goes through launch_overrides
    assert "for p in PARAMETERS" in src and "launch_overrides(PARAMETERS" in src
    assert {"namespace", "params_file", "use_rviz", "log_level", "dds_config"} <= _declared(common)
    for role in ("student", "teacher"):
        assert f'perception_launch("{role}")' in (ROOT / "launch" / f"{role}.launch.py").read_text()


def test_benchmark_launch_checks_the_node_parameters_and_exposes_distro_and_dds_config():
    path = ROOT / "launch" / "benchmark.launch.py"
    assert {"reliability", "backend", "player", "distro", "dds_config"} <= _declared(path)
    assert "launch_overrides(PARAMETERS" in path.read_text() and "dds_actions(" in path.read_text()


def test_shipped_cyclonedds_config_parses_and_holds_two_full_hd_frames():
    path = ROOT / "config" / SHIPPED
    root = ET.parse(path).getroot()
    assert root.tag == "{https://cdds.io/config}CycloneDDS"
    rcv = receive_buffer_min(path.read_text())
    assert rcv is not None and rcv >= 2 * FULL_HD_BGR8, rcv
    # nothing beyond Cyclone's defaults for multicast, interfaces or discovery
    tags = {el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    assert not tags & {
        "AllowMulticast",
        "Interfaces",
        "NetworkInterfaceAddress",
        "Peers",
        "MulticastRecvNetworkInterfaceAddresses",
    }
    assert 'glob("config/*.xml")' in (ROOT / "setup.py").read_text()  # installed under share/.../config


def test_sizes_in_cyclone_units():
    assert parse_size("16MiB") == 16 * 2**20 and parse_size("10MB") == 10**7 and parse_size("65536") == 65536
    assert parse_size("1.5 KiB") == 1536
    with pytest.raises(ValueError, match="not a Cyclone DDS size"):
        parse_size("big")
    assert receive_buffer_min("<CycloneDDS><Domain><Internal/></Domain></CycloneDDS>") is None


def test_dds_config_names_a_shipped_file_or_a_path(tmp_path):
    share = tmp_path / "share" / "config"
    share.mkdir(parents=True)
    (share / SHIPPED).write_text("<CycloneDDS/>")
    own = tmp_path / "mine.xml"
    own.write_text("<CycloneDDS/>")
    assert cyclonedds_uri("", share) is None  # the environment's CYCLONEDDS_URI stays
    assert cyclonedds_uri(SHIPPED, share) == "file://" + str((share / SHIPPED).resolve())
    assert cyclonedds_uri(str(own), share) == "file://" + str(own.resolve())
    # the environment's own configuration (e.g. confined to loopback) stays first; the file adds to it
    lo = "file:///etc/cyclone_lo.xml"
    shipped = "file://" + str((share / SHIPPED).resolve())
    assert cyclonedds_uri(SHIPPED, share, lo) == f"{lo},{shipped}"
    assert cyclonedds_uri(SHIPPED, share, f"{lo},{shipped}") == f"{lo},{shipped}"  # not twice
    assert cyclonedds_uri(SHIPPED, share, "  ") == shipped
    with pytest.raises(DdsConfigError, match=r"dds_config:='nope.xml': no such file.*dds_config:=cyclonedds.xml"):
        cyclonedds_uri("nope.xml", share)
