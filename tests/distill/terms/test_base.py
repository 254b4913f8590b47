"""The contract every registered term keeps: shapes, gradients, training, precision, state, errors."""

import inspect

import pytest
import torch

from mixkd.distill.terms import TERMS, FeatureTerm
from mixkd.errors import ConfigError

# per-sample map shapes of mixkd's CIFAR zoo (stage maps) and penultimate sizes
ZOO = {
    "vgg13": [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4)],
    "vgg8": [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4)],
    "MobileNetV2": [(12, 16, 16), (16, 8, 8), (48, 4, 4), (1280, 2, 2)],
    "resnet32x4": [(64, 32, 32), (128, 16, 16), (256, 8, 8)],
    "ShuffleV1": [(240, 16, 16), (480, 8, 8), (960, 4, 4)],
    "ResNet50": [(256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4)],
}
PAIRS = [("MobileNetV2", "vgg13"), ("ShuffleV1", "resnet32x4"), ("vgg8", "ResNet50")]  # (student, teacher)
# small heterogeneous shapes: channels differ, the student map is larger in one pair, smaller in the other
SMALL = {"maps": ([(4, 8, 8), (6, 4, 4)], [(8, 4, 4), (5, 8, 8)]), "penultimate": ([(6,)], [(10,)])}
SMALL["preact_maps"] = SMALL["maps"]
# SGD learning rates on β·loss where the default 0.01 overshoots (PKT's β is 30000)
LR = {"pkt": 1e-3}


def teacher_bn(t_shapes, seed=0):
    """Seeded BatchNorm (weight, bias) per teacher stage, for terms that need the teacher's statistics."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)) for c, *_ in t_shapes]


def build(name, s_shapes, t_shapes, seed=0):
    cls = TERMS.get(name)
    extra = {"teacher_bn": teacher_bn(t_shapes)} if "teacher_bn" in cls.requires else {}
    torch.manual_seed(seed)
    return cls(s_shapes, t_shapes, **extra)


def inputs(term, batch=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    make = lambda shapes: [torch.randn(batch, *sh, generator=g).to(dtype) for sh in shapes]  # noqa: E731
    s, t = make(term.student_shapes), make(term.teacher_shapes)
    if term.reads != "preact_maps":  # post-ReLU maps and pooled vectors are non-negative
        s, t = [x.clamp_min(0) for x in s], [x.clamp_min(0) for x in t]
    return s, t


def small(name, seed=0):
    return build(name, *SMALL[TERMS.get(name).reads], seed=seed)


def trained_parameters(term):
    """The parameters the stage in which forward() is used trains."""
    return term.stage_parameters("main" if term.main_stage else "init")


def select(shapes, stages):
    return {"all": shapes, "last": shapes[-1:], "hint": shapes[1:2]}[stages]


def zoo_pair(name, student, teacher):
    cls = TERMS.get(name)
    if cls.reads == "penultimate":
        return [(ZOO[student][-1][0],)], [(ZOO[teacher][-1][0],)]
    n = min(len(ZOO[student]), len(ZOO[teacher]))  # align the last n stages
    return select(ZOO[student][-n:], cls.stages), select(ZOO[teacher][-n:], cls.stages)


@pytest.mark.parametrize("name", TERMS.names())
def test_declares_its_contract(name):
    cls = TERMS.get(name)
    assert issubclass(cls, FeatureTerm) and cls.name == name
    assert cls.reads in ("maps", "preact_maps", "penultimate") and cls.stages in ("all", "last", "hint")
    assert cls.default_weight > 0 and len(cls.paper) > 20
    assert cls.init_stage in (None, "student", "teacher-side modules")
    assert cls.main_stage or cls.init_stage is not None
    keywords = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.name not in cls.requires}
    assert dict(cls.default_params) == keywords
    summary = cls.summary()
    assert summary["name"] == name and summary["default_params"] == keywords
    assert summary["default_weight"] == cls.default_weight and summary["reads"] == cls.reads


@pytest.mark.parametrize("name", TERMS.names())
def test_gradients_reach_the_student_and_the_term_but_not_the_teacher(name):
    term = small(name)
    s, t = inputs(term)
    s = [x.requires_grad_() for x in s]
    loss = term(s, t) if term.main_stage else term.init_loss(s, t)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 for x in s)
    assert all(not x.requires_grad and x.grad is None for x in t)
    for p in trained_parameters(term):
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", TERMS.names())
def test_a_few_sgd_steps_on_the_term_and_the_student_features_reduce_the_loss(name):
    term = small(name)
    s, t = inputs(term, seed=1)
    s = [torch.nn.Parameter(x) for x in s]
    loss_fn = term if term.main_stage else term.init_loss
    opt = torch.optim.SGD([*s, *trained_parameters(term)], lr=LR.get(name, 0.01), momentum=0.9)
    losses = []
    for _ in range(6):
        loss = term.default_weight * loss_fn(list(s), t)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", TERMS.names())
def test_bf16_features_give_a_float32_loss_even_under_autocast(name):
    term = small(name)
    s, t = inputs(term, dtype=torch.bfloat16)
    fn = term if term.main_stage else term.init_loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(s, t)
    assert loss.dtype == torch.float32
    ref = fn([x.float() for x in s], [x.float() for x in t])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("name", TERMS.names())
def test_teacher_features_made_in_inference_mode_are_accepted(name):
    term = small(name)
    s, t = inputs(term)
    with torch.inference_mode():
        t_inf = [x.clone() for x in t]
    fn = term if term.main_stage else term.init_loss
    s = [x.requires_grad_() for x in s]
    loss = fn(s, t_inf)
    loss.backward()
    assert loss.item() == pytest.approx(fn(s, t).item(), rel=1e-6)


@pytest.mark.parametrize("name", TERMS.names())
def test_state_dict_carries_everything_the_loss_depends_on(name):
    a, b = small(name, seed=0), small(name, seed=1)
    s, t = inputs(a)
    fn_a = a if a.main_stage else a.init_loss
    fn_b = b if b.main_stage else b.init_loss
    b.load_state_dict(a.state_dict())
    assert fn_b(s, t).item() == fn_a(s, t).item()


# FT on ResNet50's last map (2048 channels) is left out: its paraphraser alone has 132M parameters
@pytest.mark.parametrize("name,student,teacher", [(n, s, t) for n in TERMS.names() for s, t in PAIRS
                                                  if (n, t) != ("ft", "ResNet50")])
def test_heterogeneous_pairs_of_the_cifar_zoo(name, student, teacher):
    s_shapes, t_shapes = zoo_pair(name, student, teacher)
    term = build(name, s_shapes, t_shapes)
    s, t = inputs(term, batch=2)
    s = [x.requires_grad_() for x in s]
    loss = term(s, t) if term.main_stage else term.init_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(x.grad).all() for x in s)


def test_unpaired_or_misshapen_features_fail_clearly():
    with pytest.raises(ConfigError, match="pair them"):
        TERMS.get("at")([(4, 8, 8)], [(4, 8, 8), (8, 4, 4)])
    with pytest.raises(ConfigError, match="per-sample rank 1"):
        TERMS.get("pkt")([(4, 8, 8)], [(4,)])
    term = TERMS.get("at")([(4, 8, 8)], [(8, 4, 4)])
    with pytest.raises(ValueError, match=r"built for \[\(4, 8, 8\)\]"):
        term([torch.rand(2, 4, 4, 4)], [torch.rand(2, 8, 4, 4)])
    with pytest.raises(ValueError, match="different batch sizes"):
        term([torch.rand(2, 4, 8, 8)], [torch.rand(3, 8, 4, 4)])


def test_stage_parameters_and_init_loss_of_a_single_stage_term():
    term = small("at")
    assert term.stage_parameters("init") == [] and term.init_stage is None
    with pytest.raises(TypeError, match="no init stage"):
        term.init_loss(*inputs(term))
    with pytest.raises(ValueError, match="stage must be"):
        term.stage_parameters("warmup")
