"""Export round trips: every format loads back through its own runtime and computes what the model computes."""

import pytest
import torch

from mixkd.errors import MixkdError
from mixkd.export import FORMATS, SUFFIXES, export_student, fold, read_metadata, require_extra
from mixkd.models import build_model, list_models
from mixkd.models.registry import CARDS

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _images(arch: str, n: int = 3) -> torch.Tensor:
    size = 64 if CARDS[arch].family == "imagenet" else 32  # an ImageNet ResNet at a small input
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _round_trip(arch: str, fmt: str, tmp_path, bake: bool = True):
    torch.manual_seed(0)
    model = build_model(arch, 10).eval()
    out = tmp_path / f"{arch}{SUFFIXES[fmt]}"
    result = export_student(model, _images(arch), out, fmt, mean=MEAN, std=STD, bake=bake,
                            metadata={"arch": arch, "classes": [str(i) for i in range(10)]})
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial file left
    assert result.check.max_rel < 1e-4 and result.check.top1_agreement == 100.0
    assert result.check.batch_sizes == (3, 1)  # the dynamic batch: all images at once, then one alone
    meta = read_metadata(out)
    assert meta["arch"] == arch and meta["normalization"] == {"baked": bake, "mean": list(MEAN), "std": list(STD)}
    assert meta["input"]["shape"] == list(_images(arch).shape[1:]) and len(meta["classes"]) == 10
    return result


# one architecture of each family in the fast suite; every one of them is in the slow test below
@pytest.mark.parametrize(("arch", "fmt"), [("resnet8", "torchscript"), ("wrn_16_1", "exported-program"),
                                           ("vgg8", "torchscript"), ("ShuffleV2", "exported-program"),
                                           ("MobileNetV2", "torchscript"), ("resnet18", "onnx")])
def test_round_trip(arch, fmt, tmp_path, one_thread):
    _round_trip(arch, fmt, tmp_path)


def test_normalisation_left_to_the_caller(tmp_path, one_thread):
    result = _round_trip("resnet8", "torchscript", tmp_path, bake=False)
    assert result.metadata["input"]["values"].startswith("normalised")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", list_models())
def test_round_trip_every_architecture(arch, fmt, tmp_path):
    _round_trip(arch, fmt, tmp_path)


def test_folding_is_reported_and_skipped_where_fx_cannot_trace():
    torch.manual_seed(0)
    _, resnet = fold(build_model("resnet8", 10).eval())
    assert resnet.folded == 9 and resnet.kept == 0
    _, wrn = fold(build_model("wrn_16_1", 10).eval())  # pre-activation blocks: BN before the convolution
    assert wrn.kept > 0 and "not exact at zero-padded borders" in wrn.note
    model = build_model("vgg8", 10).eval()
    same, vgg = fold(model)
    assert same is model and vgg.folded == 0 and "cannot trace vgg8" in vgg.note


def test_a_file_that_computes_otherwise_is_refused_and_removed(tmp_path, monkeypatch):
    import mixkd.export as ex

    load = ex._LOADERS["torchscript"]

    def off_by_a_bit(path):
        run, meta = load(path)
        return (lambda x: run(x) * 1.01), meta

    monkeypatch.setitem(ex._LOADERS, "torchscript", off_by_a_bit)
    out = tmp_path / "m.pt"
    with pytest.raises(MixkdError, match="does not compute what the model computes.*nothing was written"):
        export_student(build_model("resnet8", 10).eval(), _images("resnet8"), out, "torchscript", mean=MEAN, std=STD)
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_and_missing_extra_are_one_line(monkeypatch):
    with pytest.raises(MixkdError, match="unknown export format 'tflite'; choose one of: onnx, torchscript"):
        require_extra("tflite")
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(MixkdError, match=r"--format onnx needs onnxruntime \(the export extra\): pip install -e "
                                         r"'\.\[export\]' in mixkd's checkout"):
        require_extra("onnx")
    require_extra("torchscript")  # needs only torch
