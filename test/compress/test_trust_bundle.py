"""No code runs from a bundle (issue 17): a model.pt2 whose weight is marked pickled, or which carries an
opaque constant, is refused by the torch backend before torch unpickles anything; the payload's marker
file never exists. Each payload is first shown to be live: plain ``torch.export.load`` runs it."""

import pytest

pytest.importorskip(
    "torch",
    reason="needs torch (the offline half, compress/): `make test` installs it; "
    "a ROS 2 machine under colcon test may not have it",
)

import dataclasses
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch

from mtc_perception.bundle import Bundle, BundleError
from mtc_perception.engines import create_engine
from mtc_perception.engines.pt2_check import check_program
from mtc_perception.perceptor import Perceptor

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        self.register_buffer("offset", torch.ones(2))

    def forward(self, x):
        y = self.conv(x)
        return y, y * 2, y + self.offset.view(1, 2, 1, 1)


class _Touch:
    """Unpickling this creates ``path``: the marker of code run from a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def honest_pt2(tmp_path_factory) -> bytes:
    f = tmp_path_factory.mktemp("pt2") / "model.pt2"
    torch.export.save(torch.export.export(_Tiny().eval(), (torch.zeros(1, 3, 8, 8),)), str(f))
    return f.read_bytes()


def _rewrite(data: bytes, edit) -> bytes:
    """The archive with ``edit(members)`` applied (members: name without the root folder -> bytes)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    root = src.namelist()[0].split("/")[0] + "/"
    members = {n[len(root) :]: src.read(n) for n in src.namelist()}
    edit(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for n, b in members.items():
            z.writestr(root + n, b)
    return out.getvalue()


def pickled_weight(data: bytes, marker: Path) -> bytes:
    def edit(m):
        cfg = json.loads(m["data/weights/model_weights_config.json"])
        meta = next(iter(cfg["config"].values()))
        meta["use_pickle"] = True
        m["data/weights/" + meta["path_name"]] = pickle.dumps(_Touch(marker))
        m["data/weights/model_weights_config.json"] = json.dumps(cfg).encode()

    return _rewrite(data, edit)


def opaque_constant(data: bytes, marker: Path) -> bytes:
    def edit(m):
        cfg = json.loads(m["data/constants/model_constants_config.json"])
        cfg["config"]["secret"] = {
            "path_name": "opaque_obj_0",
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }
        m["data/constants/opaque_obj_0"] = pickle.dumps(_Touch(marker))
        m["data/constants/model_constants_config.json"] = json.dumps(cfg).encode()

    return _rewrite(data, edit)


PAYLOADS = {
    "pickled weight": (pickled_weight, r"weight 'conv\.weight' is stored with pickle"),
    "opaque constant": (opaque_constant, r"members an export does not write \('data/constants/opaque_obj_0'\)"),
}


def _bundle(tmp_path: Path, pt2: bytes, onnx: bool = True) -> Path:
    d = tmp_path / "b"
    d.mkdir()
    meta = json.loads((TINY / "bundle.json").read_text())
    meta["files"]["torch"] = "model.pt2"
    if onnx:
        shutil.copy(TINY / "model.onnx", d / "model.onnx")
    (d / "model.pt2").write_bytes(pt2)
    (d / "bundle.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_the_payload_is_live_under_plain_torch_export_load(honest_pt2, tmp_path, kind):
    """The control: torch itself runs each payload (so the refusals below prove something)."""
    marker = tmp_path / "ran"
    make, _ = PAYLOADS[kind]
    try:
        torch.export.load(io.BytesIO(make(honest_pt2, marker)))
    except Exception:  # noqa: BLE001 - the program may not deserialize after the payload ran
        pass
    assert marker.exists()


def test_an_honest_program_passes_the_check_and_loads(honest_pt2, tmp_path):
    check_program(honest_pt2, tmp_path / "model.pt2", "fix")
    eng = create_engine("torch", _bundle(tmp_path, honest_pt2), device="cpu")
    out = eng.module(torch.zeros(1, 3, 8, 8))
    assert len(out) == 3 and out[0].shape == (1, 2, 8, 8)


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_the_torch_backend_refuses_the_payload_and_runs_nothing(honest_pt2, tmp_path, kind):
    marker = tmp_path / "ran"
    make, found = PAYLOADS[kind]
    d = _bundle(tmp_path, make(honest_pt2, marker))
    pt2 = str(d / "model.pt2")
    # the Perceptor (what mtc bench and the ROS node build)
    with pytest.raises(BundleError, match=found) as e:
        Perceptor(d, backend="torch", device="cpu")
    text = str(e.value)
    assert text.startswith(pt2 + ": refused to load the torch program") and "mtc-compress export" in text, text
    assert "onnxruntime" in text  # the other fix
    # mtc infer --backend torch: exit 2, the file named
    from mtc_perception.cli import main

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "f.jpg"), np.full((96, 128, 3), 100, np.uint8))
    rc = main(["infer", "--bundle", str(d), "--input", str(src), "--out", str(tmp_path / "out"), "--backend", "torch"])
    assert rc == 2
    assert not (tmp_path / "out" / "f.json").exists()
    # --backend auto runs ONNX Runtime and never opens model.pt2
    assert create_engine("auto", d).name == "onnxruntime"
    assert not marker.exists()


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_auto_without_onnxruntime_reaches_torch_and_refuses(honest_pt2, tmp_path, kind, monkeypatch):
    from mtc_perception.engines import ENGINES

    marker = tmp_path / "ran"
    make, found = PAYLOADS[kind]
    d = _bundle(tmp_path, make(honest_pt2, marker))
    monkeypatch.setattr(ENGINES["onnxruntime"], "available", classmethod(lambda cls: (False, "not installed")))
    with pytest.raises(BundleError, match=found):
        create_engine("auto", d, device="cpu")
    assert not marker.exists()


def test_without_model_onnx_auto_never_falls_through_to_torch(honest_pt2, tmp_path):
    marker = tmp_path / "ran"
    d = _bundle(tmp_path, pickled_weight(honest_pt2, marker), onnx=False)
    meta = json.loads((d / "bundle.json").read_text())
    meta["files"]["onnx"] = None
    (d / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"files\.onnx must be a relative path inside the bundle directory"):
        create_engine("auto", d)
    meta["files"]["onnx"] = "model.onnx"  # named but absent: refused when loaded, torch is not tried
    (d / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"model\.onnx is named in .* but does not exist"):
        create_engine("auto", d)
    assert not marker.exists()


def test_a_pt2_outside_the_bundle_is_not_loaded(honest_pt2, tmp_path):
    d = _bundle(tmp_path, honest_pt2)
    meta = json.loads((d / "bundle.json").read_text())
    for rel in ("../elsewhere.pt2", str(tmp_path / "elsewhere.pt2")):
        meta["files"]["torch"] = rel
        (d / "bundle.json").write_text(json.dumps(meta))
        with pytest.raises(BundleError, match=r"files\.torch must be a relative path inside the bundle"):
            Bundle.load(d)
    # a link swapped after the bundle was loaded is caught when the file is needed
    meta["files"]["torch"] = "model.pt2"
    (d / "bundle.json").write_text(json.dumps(meta))
    b = Bundle.load(d)
    (tmp_path / "elsewhere.pt2").write_bytes(honest_pt2)
    (d / "model.pt2").unlink()
    (d / "model.pt2").symlink_to(tmp_path / "elsewhere.pt2")
    with pytest.raises(BundleError, match=r"files\.torch 'model\.pt2' resolves to .*elsewhere\.pt2, outside"):
        create_engine("torch", b, device="cpu")


@pytest.mark.parametrize(
    "edit,found",
    [
        (lambda m: m.update({"data/weights/model.pt": b"x"}), r"members an export does not write"),
        (lambda m: m.update({"data/aotinductor/model/x.so": b"x"}), r"members an export does not write"),
        (
            lambda m: m.update(
                {"models/model.json": m["models/model.json"].replace(b'"guards_code": []', b'"guards_code": ["1"]')}
            ),
            r"guards_code",
        ),
        (
            lambda m: m.update(
                {"models/model.json": m["models/model.json"].replace(b"torch.ops.aten.mul.Tensor", b"torch.load")}
            ),
            r"calls 'torch\.load'",
        ),
        (lambda m: m.update({"data/sample_inputs/model.pt": pickle.dumps(_Touch("/nonexistent/x"))}), r"sample inputs"),
        (
            lambda m: m.update(
                {
                    k: m[k].replace(b'"conv.weight"', b'"c.we\\"+exec(chr(49))+\\"ight"')
                    for k in ("models/model.json", "data/weights/model_weights_config.json")
                }
            ),
            r"weight name 'c\.we\"\+exec",
        ),
    ],
    ids=["legacy weights", "aoti library", "guards code", "non-aten target", "pickled sample inputs", "code in a name"],
)
def test_other_ways_to_run_code_are_refused(honest_pt2, tmp_path, edit, found):
    with pytest.raises(BundleError, match=found):
        check_program(_rewrite(honest_pt2, edit), tmp_path / "model.pt2", "fix")


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_the_load_guard_alone_stops_each_payload(honest_pt2, tmp_path, kind):
    """The second line: even without the archive check, loading under no_unpickling runs nothing."""
    from mtc_perception.engines.pt2_check import no_unpickling

    marker = tmp_path / "ran"
    make, _ = PAYLOADS[kind]
    with pytest.raises(BundleError, match=r"model\.pt2: refused to load the torch program: torch tried"):
        with no_unpickling(tmp_path / "model.pt2", "fix"):
            torch.export.load(io.BytesIO(make(honest_pt2, marker)))
    assert not marker.exists()
    assert torch.load is not None and torch.export.load(io.BytesIO(honest_pt2))  # restored afterwards


# ---------------------------------------------------------------------------------------------
# mtc-compress export --out never deletes what is not a bundle


def test_export_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path, synth_root):
    from compress.checkpoint import save_checkpoint
    from compress.cli import main
    from compress.export import ExportConfig, ExportError, export_bundle
    from compress.models import ModelConfig, build_model

    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"keep me")
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    for out, what in ((precious, "a folder without bundle.json"), (afile, "a file")):
        # refused before the checkpoint is even read (it does not exist here): nothing is deleted
        with pytest.raises(ExportError, match=rf"--out {out} exists and is {what}, not a model bundle.*--force"):
            export_bundle(tmp_path / "missing.pt", out, ExportConfig(img_size=(128, 96)))
        assert main(["export", "--ckpt", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert (precious / "holiday.jpg").read_bytes() == b"keep me" and afile.read_text() == "keep me"
    # a stale OUT.partial that an export did not make is kept too
    stray = tmp_path / "b.partial"
    stray.mkdir()
    with pytest.raises(ExportError, match=r"b\.partial exists and is a folder without \.mtc-export-partial"):
        export_bundle(tmp_path / "missing.pt", tmp_path / "b", ExportConfig(img_size=(128, 96)))
    stray.rmdir()

    ck = save_checkpoint(
        tmp_path / "m.pt", build_model(ModelConfig(size="tiny")).eval(), train_config={"data": str(synth_root)}
    )
    cfg = ExportConfig(img_size=(128, 96), parity_frames=1, simplify=False)
    export_bundle(ck, tmp_path / "b", cfg)
    export_bundle(ck, tmp_path / "b", cfg)  # an existing bundle is replaced
    assert (tmp_path / "b" / "bundle.json").is_file() and not (tmp_path / "b" / ".mtc-export-partial").exists()
    export_bundle(ck, precious, dataclasses.replace(cfg, force=True))  # --force replaces anything
    assert (precious / "bundle.json").is_file() and not (precious / "holiday.jpg").exists()
