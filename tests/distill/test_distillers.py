import pytest
import torch

from mixkd.config import DistillConfig, MixingConfig, load_config
from mixkd.data import Batch
from mixkd.distill import DISTILLERS, DistillContext, FrozenTeacher, build_distiller
from mixkd.distill.losses import hinton_kd, kl_batchmean, soft_cross_entropy, std_rescale, zscore
from mixkd.engine.cohort import Cohort, Member
from mixkd.engine.trainer import train
from mixkd.errors import ConfigError
from mixkd.mixing import build_mixer
from mixkd.models import build_model
from tests.conftest import TINY, requires_fmnist

CTX = DistillContext(num_classes=10, input_shape=(3, 32, 32), num_samples=8, train_labels=None,
                     device=torch.device("cpu"))


def _pair():
    torch.manual_seed(0)
    return build_model("resnet8", 10), FrozenTeacher(build_model("resnet14", 10))


def test_registry_names_the_methods():
    assert {"ce", "kd", "mixkd", "logitstd", "dkd", "crd"} <= set(DISTILLERS.names())


def test_ce_cannot_take_a_kd_weight():
    with pytest.raises(ConfigError, match="distill.kd_weight must be 0"):
        build_distiller(DistillConfig(method="ce", kd_weight=0.5), build_model("resnet8", 10), None, CTX)


def test_mixkd_terms_are_the_papers_objective():
    student, teacher = _pair()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    mix = build_mixer(MixingConfig(name="mixup", fraction=0.5), seed=0)(x, y, 10)
    batch = Batch(x, y, index=None, view=None)
    d = build_distiller(DistillConfig(method="mixkd"), student, teacher, CTX)
    d.train()
    logits, terms = d(batch, mix)
    t = teacher.model(mix.x)
    s = student(mix.x)
    torch.testing.assert_close(terms["ce"], 0.1 * soft_cross_entropy(std_rescale(s), mix.target))
    torch.testing.assert_close(terms["kd"], 0.9 * kl_batchmean(std_rescale(s), std_rescale(t)))
    kd = build_distiller(DistillConfig(method="kd", temperature=4.0), student, teacher, CTX)
    _, terms = kd(batch, mix)
    torch.testing.assert_close(terms["kd"], 0.9 * hinton_kd(s, t, 4.0), rtol=1e-4, atol=1e-5)
    ls = build_distiller(DistillConfig(method="logitstd", base_temperature=2.0), student, teacher, CTX)
    _, terms = ls(batch, mix)
    torch.testing.assert_close(terms["kd"], 0.9 * hinton_kd(zscore(s), zscore(t), 2.0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(terms["ce"], 0.1 * soft_cross_entropy(s, mix.target), rtol=1e-4, atol=1e-6)


def test_teacher_stays_in_eval_mode_without_gradients():
    student, teacher = _pair()
    d = build_distiller(DistillConfig(method="kd"), student, teacher, CTX)
    d.train()
    assert student.training and not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())


@requires_fmnist
def test_short_distillation_leaves_teacher_weights_and_bn_stats_unchanged(tmp_path):
    teacher_dir = tmp_path / "teacher"
    train(load_config(None, TINY + ["optim.epochs=1", "optim.milestones=[]"]), teacher_dir, quiet=True)
    cfg = load_config(None, TINY + ["optim.epochs=1", "optim.milestones=[]", "distill.method=mixkd",
                                    "mixing.name=mixup",
                                    "mixing.fraction=0.5", f"teacher.checkpoint={teacher_dir / 'last.pt'}"])
    cohort = Cohort([Member(cfg, tmp_path / "student")], quiet=True)
    (summary,) = cohort.fit()
    before = torch.load(teacher_dir / "last.pt", weights_only=True)["model"]
    after = cohort.students[0].teacher.model.state_dict()
    assert set(before) == set(after)
    for k in before:
        assert torch.equal(before[k], after[k]), k  # includes BatchNorm running_mean/var and counters
    assert summary["teacher"]["top1"] > 10 and "best_top1" in summary
    # the function that produced the targets (BatchNorm folded) is still the checkpoint's teacher
    x = torch.randn(4, 3, 32, 32)
    reference = build_model("resnet8", 10)
    reference.load_state_dict(before)
    with torch.no_grad():
        torch.testing.assert_close(cohort.students[0].teacher.fast(x), reference.eval()(x), rtol=1e-4, atol=1e-4)
