"""`mtc bag` recordings read back through rosbags and, for MCAP, through the independent `mcap` +
`mcap-ros2-support` readers: identical pixels, stamps and labels; damaged files are salvaged."""

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (ROS 2 message definitions, CDR, rosbag2 files): a required dependency, see import_guards.REQUIRED",
)

from bag_helpers import mcap_read as _mcap_read
from bag_helpers import rosbags_read as _rosbags_read
from rosbags.typesys import Stores, get_typestore

from mtc_perception.bags import (
    DEFAULT_START_NS,
    BagError,
    BagReader,
    RecordingWriter,
    SourceFrame,
    WriteConfig,
    stamp_to_ns,
    write_bag,
)
from mtc_perception.cli import main as mtc
from mtc_perception.imaging import image_to_bgr

ROOT = Path(__file__).resolve().parents[2]
DISTROS = ["humble", "jazzy"]
STORES = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}


def _frames(n=5, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Five random PNG frames (lossless: pixels must come back exactly) and one broken file."""
    d = tmp_path_factory.mktemp("frames")
    for i, f in enumerate(_frames()):
        cv2.imwrite(str(d / f"f{i:02d}.png"), f)
    (d / "f99_broken.png").write_bytes(b"not an image")
    return d


def _pixels(msg):
    """bgr8 pixels of a decoded Image from either reader (mcap_ros2 gives bytes, rosbags numpy)."""
    data = np.frombuffer(bytes(msg.data), np.uint8)
    assert msg.encoding == "bgr8" and msg.step == msg.width * 3
    return data.reshape(msg.height, msg.width, 3)


@pytest.mark.parametrize("distro", DISTROS)
def test_folder_to_mcap_reads_back_identically_through_rosbags_and_mcap(tmp_path, image_dir, distro, logs):
    out = tmp_path / "bag"
    assert (
        mtc(
            [
                "bag",
                "--input",
                str(image_dir),
                "--out",
                str(out),
                "--distro",
                distro,
                "--fps",
                "20",
                "--frame-id",
                "cam0",
            ]
        )
        == 0
    )
    assert (out / "metadata.yaml").is_file() and "version: 8" in (out / "metadata.yaml").read_text()
    assert "f99_broken" in logs.text  # the unreadable file is reported, not silently dropped
    want = _frames()
    stamps = [DEFAULT_START_NS + i * 50_000_000 for i in range(len(want))]
    a, b = _rosbags_read(out, "/camera/image_raw", distro), _mcap_read(out, "/camera/image_raw")
    assert len(a) == len(b) == len(want)
    for (ta, ma), (tb, mb), img, s in zip(a, b, want, stamps):
        assert ta == tb == s
        assert stamp_to_ns(ma.header.stamp) == s and mb.header.stamp.sec * 10**9 + mb.header.stamp.nanosec == s
        assert ma.header.frame_id == mb.header.frame_id == "cam0"
        assert np.array_equal(_pixels(ma), img) and np.array_equal(_pixels(mb), img)
        assert np.array_equal(image_to_bgr(ma), img)


@pytest.mark.parametrize("distro", DISTROS)
def test_folder_to_sqlite3_reads_back_identically_through_rosbags(tmp_path, image_dir, distro):
    out = tmp_path / "bag"
    assert mtc(["bag", "--input", str(image_dir), "--out", str(out), "--storage", "sqlite3", "--distro", distro]) == 0
    assert list(out.glob("*.db3")) and not list(out.glob("*.mcap"))
    got = _rosbags_read(out, "/camera/image_raw", distro)
    want = _frames()
    assert [t for t, _ in got] == [DEFAULT_START_NS + i * 100_000_000 for i in range(len(want))]
    for (_, m), img in zip(got, want):
        assert np.array_equal(_pixels(m), img)


def test_distro_stores_are_recorded(tmp_path, image_dir):
    """Humble and Jazzy bags embed their own store's definitions (the type hash in the metadata
    is the store's), and both read back with either store through AnyReader."""
    import yaml

    hashes = {}
    for distro in DISTROS:
        out = tmp_path / distro
        write_bag(out, [SourceFrame("a", _frames(1)[0])], WriteConfig(distro=distro))
        meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        (topic,) = meta["topics_with_message_count"]
        hashes[distro] = topic["topic_metadata"]["type_description_hash"]
        ts = get_typestore(STORES[distro])
        assert hashes[distro] == ts.hash_rihs01("sensor_msgs/msg/Image")
        for other in DISTROS:
            assert len(_rosbags_read(out, "/camera/image_raw", other)) == 1


def test_mtc_bag_dataset_points_to_mtc_compress(tmp_path, logs):
    """The runtime never reads datasets: `mtc bag --dataset` says which command records one."""
    assert mtc(["bag", "--dataset", str(tmp_path / "synthroad"), "--out", str(tmp_path / "b")]) == 2
    assert "mtc-compress bag --dataset" in logs.text and not (tmp_path / "b").exists()


def test_video_input(tmp_path):
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    if not w.isOpened():
        pytest.skip("OpenCV here cannot write MJPG video")
    for f in _frames(7):
        w.write(f)
    w.release()
    out = tmp_path / "bag"
    assert mtc(["bag", "--input", str(video), "--out", str(out), "--storage", "sqlite3"]) == 0
    got = _rosbags_read(out, "/camera/image_raw", "humble")
    assert len(got) == 7 and all((m.width, m.height) == (64, 48) for _, m in got)


def test_bad_requests(tmp_path, image_dir):
    out = tmp_path / "bag"
    out.mkdir()
    assert mtc(["bag", "--input", str(image_dir), "--out", str(out)]) == 2  # rosbag2 writers never overwrite
    with pytest.raises(BagError, match="fps"):
        WriteConfig(fps=0)
    assert mtc(["bag", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "b2")]) == 2


def _raw_bag(path, storage, n=14, size=(320, 180)):
    """Frames of 172 kB each: MCAP chunks (1 MiB) then hold ~6 frames, so a cut lands mid-file."""
    frames = [np.full((size[1], size[0], 3), 10 + 15 * i, np.uint8) for i in range(n)]
    write_bag(path, [SourceFrame(str(i), f) for i, f in enumerate(frames)], WriteConfig(storage=storage))
    return frames


def _complete_before_cut(bag, cut, frames):
    """How many frames' pixel runs (each frame one grey value; data is an Image's last field) end
    before the cut, found by searching the intact file's bytes."""
    (path,) = bag.glob("*.mcap")
    data, size = path.read_bytes(), next(cut.glob("*.mcap")).stat().st_size
    ends = [data.find(f[0, 0, :1].tobytes() * f.size) + f.size for f in frames]
    assert all(e > f.size for e, f in zip(ends, frames)) and ends == sorted(ends)
    return sum(e <= size for e in ends)


def _cut(bag, fraction, dst):
    shutil.copytree(bag, dst)
    (f,) = [p for p in dst.iterdir() if p.suffix in (".mcap", ".db3")]
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_file_cut_short_is_read_up_to_its_last_good_message(tmp_path, storage):
    frames = _raw_bag(tmp_path / "bag", storage)
    with BagReader(tmp_path / "bag") as r:  # intact: rosbags' own reader, no salvage
        assert not r.salvaged and r.error is None and r.topics["/camera/image_raw"].count == len(frames)
    cut = _cut(tmp_path / "bag", 0.7, tmp_path / "cut")  # in the 2nd 1 MiB chunk
    with BagReader(cut) as r:
        assert r.salvaged and r.topics["/camera/image_raw"].count == len(frames)  # the count comes from metadata.yaml
        got = [r.deserialize(m) for m in r.messages(["/camera/image_raw"])]
        assert r.error and ("malformed" in r.error or "cut short" in r.error)
    assert 2 <= len(got) < len(frames)
    if storage == "mcap":  # exactly the frames whose bytes lie wholly before the cut, even inside a chunk cut short
        assert len(got) == _complete_before_cut(tmp_path / "bag", cut, frames)
    for i, m in enumerate(got):  # the first frames, in order, intact
        assert stamp_to_ns(m.header.stamp) == DEFAULT_START_NS + i * 100_000_000
        assert np.array_equal(image_to_bgr(m), frames[i])


def test_a_lone_mcap_file_without_metadata_is_read(tmp_path):
    frames = _raw_bag(tmp_path / "bag", "mcap", n=3)
    (f,) = (tmp_path / "bag").glob("*.mcap")
    with BagReader(f) as r:
        got = [image_to_bgr(r.deserialize(m)) for m in r.messages(["/camera/image_raw"])]
        assert r.error is None
    assert all(np.array_equal(a, b) for a, b in zip(got, frames)) and len(got) == 3


def test_not_a_bag(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(BagError, match="no rosbag2 storage file"):
        BagReader(tmp_path / "x")
    (tmp_path / "x" / "x.mcap").write_bytes(b"garbage!" * 10)
    with pytest.raises(BagError, match="not an MCAP file"):
        BagReader(tmp_path / "x" / "x.mcap")


def test_writer_serializes_with_the_distro_store(tmp_path):
    with RecordingWriter(tmp_path / "b", "mcap", "jazzy") as w:
        w.add_topic("/x", "std_msgs/msg/String")
        w.write("/x", 5, w.types("std_msgs/msg/String")(data="hello"))
    (got,) = _rosbags_read(tmp_path / "b", "/x", "jazzy")
    assert got[0] == 5 and got[1].data == "hello"


def test_importing_the_runtime_needs_no_rosbags():
    code = (
        "import sys, mtc_perception, mtc_perception.bags, mtc_perception.bench.report, mtc_perception.bench.replay, "
        "mtc_perception.metrics; bad = [m for m in ('rosbags', 'torch', 'compress', 'matplotlib') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
