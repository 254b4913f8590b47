"""Ship a student: ONNX, TorchScript or a torch.export ExportedProgram, checked against the eager model.

The exported graph is the student alone, in eval mode, with a dynamic batch size, its conv → BatchNorm pairs
folded into one convolution (exact up to float rounding; a BatchNorm with no convolution right before it
stays, since folding it into the next convolution is not exact at zero-padded borders), and the input
normalisation either baked in as its first operation (input: pixels in [0, 1]) or left to the caller and
recorded in the file's metadata, with the class names, input size and the run's config hash.

The file is written under a temporary name, loaded back with its own runtime (onnxruntime for ONNX,
torch.jit.load, torch.export.load), run on real test images at two batch sizes and compared with the eager
model; only a file within tolerance is moved to its name, so a failed check leaves no file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mixkd.errors import MixkdError
from mixkd.models.fold import fold_batchnorm

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
METADATA_KEY = "mixkd.json"  # the extra file (TorchScript, ExportedProgram) / metadata_props key (ONNX)
EXTRA = "pip install -e '.[export]' in mixkd's checkout (or pip install onnx onnxscript onnxruntime)"


class Deployable(nn.Module):
    """`model(x)` → logits, with `(x − mean) / std` first when the normalisation is baked in."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.model = model
        self.baked = mean is not None
        if self.baked:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of `x` (pixels in [0, 1] when baked, else already normalised)."""
        if self.baked:
            x = (x - self.mean) / self.std
        return self.model(x)


@dataclass
class Folding:
    """What BatchNorm folding did: how many BatchNorms were folded, how many stay, and why."""

    folded: int
    kept: int
    note: str


@dataclass
class Check:
    """The exported file against the eager model on the same images."""

    images: int
    batch_sizes: tuple[int, ...]
    max_abs: float  # max |exported − eager| over every logit
    max_rel: float  # max over images of max|exported − eager| / max|eager logit| of that image
    top1_agreement: float  # percent of images whose top-1 class is the same

    def line(self) -> str:
        """One line for the terminal."""
        sizes = " and ".join(map(str, self.batch_sizes))
        return (f"checked on {self.images} test images (batches of {sizes}): max abs diff {self.max_abs:.3g}, "
                f"max rel diff {self.max_rel:.3g}, top-1 agreement {self.top1_agreement:.2f}%")


@dataclass
class ExportResult:
    """What `export_student` wrote and measured."""

    path: Path
    format: str
    folding: Folding
    check: Check
    metadata: dict


def config_hash(config: dict | None) -> str | None:
    """sha256 of a run's resolved config (canonical JSON), or None without one."""
    if config is None:
        return None
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def require_extra(fmt: str) -> None:
    """Refuse in one line, before any work, a format whose packages are not installed."""
    if fmt not in FORMATS:
        raise MixkdError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt != "onnx":
        return
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MixkdError(f"--format onnx needs {', '.join(missing)} (the export extra): {EXTRA}")


def check_out(out: Path, fmt: str, force: bool = True) -> None:
    """Refuse, before any work, an --out the format cannot have or that would replace a file unasked."""
    if fmt == "exported-program" and out.suffix != ".pt2":
        raise MixkdError(f"--out {out}: an exported-program file must end in .pt2 (torch.export.load reads no "
                         f"other name); use --out {out.with_suffix('.pt2')}")
    if out.is_dir():
        raise MixkdError(f"--out {out} is a folder; name the file to write, e.g. {out / ('model' + SUFFIXES[fmt])}")
    if not out.parent.is_dir():
        raise MixkdError(f"--out {out}: no folder {out.parent}; create it first")
    if out.exists() and not force:
        raise MixkdError(f"--out {out} already exists; pass --force to replace it, or choose another name")


def fold(model: nn.Module) -> tuple[nn.Module, Folding]:
    """A copy of `model` with its conv → BatchNorm pairs folded (exact up to rounding), and what was folded."""
    before = _batchnorms(model)
    folded = fold_batchnorm(model)
    if folded is model:  # fx could not trace it (VGG's input-size branch)
        return model, Folding(0, before, f"BatchNorm not folded: torch.fx cannot trace "
                                         f"{getattr(model, 'arch', type(model).__name__)}, so it is exported as is")
    kept = _batchnorms(folded)
    note = f"folded {before - kept} of {before} BatchNorms into the convolution before them"
    if kept:
        note += (f"; {kept} kept: no convolution directly before them (folding one into the next convolution "
                 "is not exact at zero-padded borders)")
    return folded, Folding(before - kept, kept, note)


def export_student(model: nn.Module, images: Tensor, out: Path, fmt: str, *, mean: tuple[float, ...],
                   std: tuple[float, ...], bake: bool = True, fold_bn: bool = True, metadata: dict | None = None,
                   tolerance: float = 1e-4, min_agreement: float = 99.0) -> ExportResult:
    """Export `model` (eval mode, CPU, fp32) to `out` in `fmt`, then load it back and check it on `images`.

    `images` are normalised model inputs (N, C, H, W), as the test loader yields them. The check fails, and
    `out` is not written, when the max relative difference exceeds `tolerance` or fewer than `min_agreement`
    percent of the images keep their top-1 class.
    """
    require_extra(fmt)
    check_out(Path(out), fmt)
    eager = model.cpu().float().eval()
    images = images.detach().cpu().float()
    with torch.no_grad():
        expected = eager(images)
    if bake:
        inputs = images * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    else:
        inputs = images
    graph, folding = fold(eager) if fold_bn else (eager, Folding(0, _batchnorms(eager), "BatchNorm not folded "
                                                                 "(--no-fold)"))
    wrapped = Deployable(graph, mean if bake else None, std if bake else None).eval()
    meta = {"mixkd_export": 1, "format": fmt, **(metadata or {}),
            "input": {"shape": list(images.shape[1:]), "dtype": "float32", "layout": "NCHW",
                      "values": "pixels in [0, 1]" if bake else "normalised: (pixels - mean) / std per channel"},
            "normalization": {"baked": bake, "mean": list(mean), "std": list(std)},
            "output": "logits (batch, num_classes)", "batchnorm": asdict(folding),
            "torch": torch.__version__}
    out = Path(out)
    # the suffix stays last: torch.export.load reads only files ending in .pt2
    partial = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
    try:
        with torch.no_grad(), _quiet():
            _WRITERS[fmt](wrapped, inputs[:2].clone(), partial, json.dumps(meta, sort_keys=True))
        run, stored = _LOADERS[fmt](partial)
        if stored != json.loads(json.dumps(meta, sort_keys=True)):
            raise MixkdError(f"{fmt} export: the metadata read back from the file differs from what was written")
        check = compare(run, inputs, expected)
        if check.max_rel > tolerance or check.top1_agreement < min_agreement:
            raise MixkdError(f"the {fmt} file does not compute what the model computes ({check.line()}; tolerance: "
                             f"rel {tolerance:g}, agreement >= {min_agreement:g}%); nothing was written to {out}")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(out, fmt, folding, check, meta)


def compare(run: Callable[[Tensor], Tensor], inputs: Tensor, expected: Tensor) -> Check:
    """Run the loaded file on all `inputs` at once and on the first one alone (the dynamic batch)."""
    sizes = (len(inputs), 1) if len(inputs) > 1 else (1,)
    try:
        got = run(inputs)
        one = run(inputs[:1])
    except Exception as e:  # a runtime's own error (a batch size it fixed, an unsupported op): one line
        raise MixkdError(f"the exported file cannot be run back on {len(inputs)} test images "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e) else ''})") from None
    got, one = got.float(), one.float()
    if got.shape != expected.shape or one.shape != expected[:1].shape:
        raise MixkdError(f"the exported file returns shape {list(got.shape)}, the model {list(expected.shape)}")
    diff = torch.cat([(got - expected).abs(), (one - expected[:1]).abs()])
    scale = torch.cat([expected, expected[:1]]).abs().amax(dim=1).clamp_min(1e-12)
    agree = (torch.cat([got, one]).argmax(1) == torch.cat([expected, expected[:1]]).argmax(1)).float().mean()
    return Check(len(inputs), sizes, float(diff.max()), float((diff.amax(dim=1) / scale).max()),
                 100.0 * float(agree))


def read_metadata(path: str | Path) -> dict:
    """The mixkd metadata of an exported file of any of the three formats."""
    path = Path(path)
    fmt = "onnx" if path.suffix == ".onnx" else ("torchscript" if _is_torchscript(path) else "exported-program")
    return _LOADERS[fmt](path)[1]


# --------------------------------------------------------------------------- writers and loaders


def _dynamic_batch():
    return {"x": {0: torch.export.Dim("batch", min=1, max=65536)}}


def _write_onnx(model: nn.Module, x: Tensor, path: Path, meta: str) -> None:
    import onnx

    program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=_dynamic_batch(), input_names=["x"],
                                output_names=["logits"], external_data=False, verbose=False)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta
    onnx.save(proto, str(path))


def _load_onnx(path: Path):
    import onnx
    import onnxruntime as ort

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

    return run, json.loads(meta.get(METADATA_KEY, "{}"))


def _write_torchscript(model: nn.Module, x: Tensor, path: Path, meta: str) -> None:
    traced = torch.jit.trace(model, (x,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: meta})


def _load_torchscript(path: Path):
    extra = {METADATA_KEY: ""}
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return module(x)

    return run, json.loads(extra[METADATA_KEY] or "{}")


def _write_exported_program(model: nn.Module, x: Tensor, path: Path, meta: str) -> None:
    program = torch.export.export(model, (x,), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, str(path), extra_files={METADATA_KEY: meta})


def _load_exported_program(path: Path):
    extra = {METADATA_KEY: ""}
    module = torch.export.load(str(path), extra_files=extra).module()

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return module(x)

    return run, json.loads(extra[METADATA_KEY] or "{}")


_WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript, "exported-program": _write_exported_program}
_LOADERS = {"onnx": _load_onnx, "torchscript": _load_torchscript, "exported-program": _load_exported_program}


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@contextlib.contextmanager
def _quiet():
    """The exporters' progress prints and deprecation/tracer warnings stay off the terminal (the check says
    whether the file is right)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
