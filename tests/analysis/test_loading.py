import pytest
import torch

from mixkd.analysis.loading import load_models
from mixkd.errors import ConfigError, MixkdError
from tests.conftest import requires_fmnist

pytestmark = requires_fmnist


def test_run_directory_checkpoint_file_and_community_file_agree(trained_run, tmp_path):
    run = trained_run[0]
    state = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    community = tmp_path / "exported.pth"
    torch.save({"model": state["model"]}, community)
    models, data = load_models([run, run / "best.pt", community], arch="resnet8", device="cpu",
                               overrides=["data.test_subset=64"])
    # colliding names get their parent folder: the run directory vs its checkpoint file
    assert [m.label for m in models] == [f"{run.parent.name}/resnet8", "resnet8/best.pt", "exported"]
    assert data.spec.name == "fashion-mnist" and data.loader("test").num_samples == 64
    batch = next(iter(data.loader("test")))
    outs = [m.model(batch.x) for m in models]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert not models[0].model.training


def test_folder_of_runs_expands(trained_run):
    models, _ = load_models([trained_run[0].parent], device="cpu")
    assert [m.label for m in models] == ["resnet8"]


def test_bad_model_arguments(tmp_path, untrained_ckpt):
    with pytest.raises(ConfigError, match="--data NAME"):
        load_models([untrained_ckpt], arch="resnet8")
    with pytest.raises(ConfigError, match="data.\\* overrides only"):
        load_models(["run"], overrides=["optim.lr=0.1"])
    with pytest.raises(MixkdError, match="no such run directory"):
        load_models([tmp_path / "nope"])
    with pytest.raises(MixkdError, match="does not record its architecture"):
        load_models([untrained_ckpt], data="fashion-mnist")


def test_the_checkpoint_each_model_is_read_from_is_said(trained_run, tmp_path, capsys):
    import shutil

    run = trained_run[0]
    only_last = tmp_path / "only-last"
    shutil.copytree(run, only_last)
    (only_last / "best.pt").unlink()
    load_models([run, only_last], device="cpu", overrides=["data.test_subset=8"])
    lines = capsys.readouterr().err.splitlines()
    assert f"resnet8: {run / 'best.pt'}" in lines
    assert f"only-last: {only_last / 'last.pt'} (the run has no best.pt: its last epoch)" in lines
