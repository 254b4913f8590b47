import json

import pytest
import torch
import torch.nn.functional as F

from mixkd.analysis.loading import load_models
from mixkd.analysis.robustness import ATTACKS, AttackSettings, accuracy_under_attack, parse_eps
from mixkd.engine.metrics import evaluate
from mixkd.errors import ConfigError
from tests.conftest import requires_fmnist, run_mixkd

pytestmark = requires_fmnist


@pytest.fixture(scope="module")
def loaded(trained_run):
    (model,), data = load_models([trained_run[0]], device="cpu")
    return model.model, data


def test_eps_zero_is_the_clean_accuracy_of_the_run(loaded, trained_run):
    model, data = loaded
    acc = accuracy_under_attack(model, data.loader("test"), data.spec, [0.0, 8 / 255])
    clean = evaluate(model, data.loader("test"))["top1"]
    assert acc["fgsm"][0] == clean and acc["ifgsm"][0] == clean
    # the analysis sees the same test rows the run was evaluated on, so best.pt reproduces best_top1
    assert clean == trained_run[1]["best_top1"]


def test_both_attacks_hurt_a_non_robust_model(loaded):
    # I-FGSM need not beat FGSM on a given sample set (its steps of eps/10 reach the ball's edge only where the
    # gradient's sign holds), so only what both guarantee by a wide margin is asserted here
    model, data = loaded
    eps = [0.0, 2 / 255, 8 / 255]
    acc = accuracy_under_attack(model, data.loader("test"), data.spec, eps)
    clean = acc["fgsm"][0]
    for name in ("fgsm", "ifgsm"):
        assert acc[name][2] < clean - 10, acc  # 8/255 really hurts
        assert acc[name][1] < clean, acc


def _loss(model, pixels, y, spec) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(spec.normalize(pixels)).float(), y, reduction="sum"))


def test_ifgsm_is_projected_signed_gradient_ascent(loaded):
    """Each of the steps is x + step * sign(grad), projected into the eps-ball and [0, 1]; the loss goes up."""
    model, data = loaded
    batch = next(iter(data.loader("test")))
    pixels, y = data.spec.denormalize(batch.x).clamp(0, 1), batch.y
    eps, steps = 2 / 255, 3
    adv = ATTACKS.get("ifgsm")(model, pixels, y, eps, data.spec, AttackSettings(steps=steps))
    iterate, losses = pixels.clone(), [_loss(model, pixels, y, data.spec)]
    for _ in range(steps):
        x = iterate.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(data.spec.normalize(x)).float(), y, reduction="sum"), x)
        iterate = (iterate + eps / steps * grad.sign()).clamp(pixels - eps, pixels + eps).clamp(0, 1)
        assert (iterate - pixels).abs().max() <= eps + 1e-6 and iterate.min() >= 0 and iterate.max() <= 1
        losses.append(_loss(model, iterate, y, data.spec))
    assert torch.allclose(adv, iterate, atol=1e-6)  # the default step is eps / steps
    assert losses[-1] > losses[0] + 1.0, losses  # the loss it reaches is well above the clean loss


@pytest.mark.parametrize("name", ["fgsm", "ifgsm"])
def test_perturbation_lives_in_pixel_space(loaded, name):
    model, data = loaded
    batch = next(iter(data.loader("test")))
    pixels = data.spec.denormalize(batch.x).clamp(0, 1)
    eps = 3 / 255
    adv = ATTACKS.get(name)(model, pixels, batch.y, eps, data.spec, AttackSettings(steps=5))
    delta = (adv - pixels).abs()
    assert adv.min() >= 0 and adv.max() <= 1
    assert delta.max() <= eps + 1e-6
    # the full budget is spent in pixel units (not eps * std, as perturbing normalised inputs would give)
    assert delta.max() >= eps - 1e-6
    assert data.spec.std[0] < 0.5  # so the two readings of eps really differ on this dataset
    assert not torch.equal(model(data.spec.normalize(adv)).argmax(1), model(batch.x).argmax(1))


def test_ifgsm_step_size_is_configurable(loaded):
    model, data = loaded
    batch = next(iter(data.loader("test")))
    pixels = data.spec.denormalize(batch.x).clamp(0, 1)
    eps = 4 / 255
    # one step of eps/1 from the clean image is FGSM restricted to the ball: the same pixels
    one = ATTACKS.get("ifgsm")(model, pixels, batch.y, eps, data.spec, AttackSettings(steps=1))
    assert torch.allclose(one, ATTACKS.get("fgsm")(model, pixels, batch.y, eps, data.spec), atol=1e-6)
    tiny = ATTACKS.get("ifgsm")(model, pixels, batch.y, eps, data.spec, AttackSettings(steps=2, step_size=0.5 / 255))
    assert (tiny - pixels).abs().max() <= 1 / 255 + 1e-6


def test_parse_eps():
    assert parse_eps(["0.01", "2/255", "0", "0"]) == [0.0, 2 / 255, 0.01]
    with pytest.raises(ConfigError, match="/255"):
        parse_eps(["8"])
    with pytest.raises(ConfigError, match="pixel units"):
        parse_eps(["eight"])


def test_attack_command_writes_table_csv_json_and_plot(trained_run, tmp_path):
    run, summary = trained_run
    proc = run_mixkd("attack", str(run), "--eps", "0", "4/255", "--steps", "3", "--device", "cpu",
                     "--out", str(tmp_path))
    assert "| resnet8 | fgsm |" in proc.stdout
    result = json.loads((tmp_path / "attack.json").read_text())
    assert result["eps"] == [0.0, pytest.approx(4 / 255)]
    assert result["top1"]["resnet8"]["fgsm"][0] == summary["best_top1"]
    assert max(result["top1"]["resnet8"]["ifgsm"][1], result["top1"]["resnet8"]["fgsm"][1]) < summary["best_top1"]
    header = (tmp_path / "attack.csv").read_text().splitlines()[0]
    assert header == "model,attack,eps=0/255,eps=4/255"
    assert (tmp_path / "attack.png").stat().st_size > 10_000
    bad = run_mixkd("attack", str(run), "--attacks", "pgd", "--out", str(tmp_path), check=False)
    assert bad.returncode == 2 and "unknown attack 'pgd'" in bad.stderr
