"""A KD method declares its parameters once, in its own file; its typed `distill.<name>` section, its
validation, `mixkd methods` and the saved config all come from that one declaration."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

from mixkd.config import from_dict, load_config, section_types, to_saved_dict
from mixkd.distill import DISTILLERS, sections
from mixkd.errors import ConfigError
from mixkd.params import Param


def _sections() -> list[tuple[str, str, Param]]:
    return [(name, key, p) for name, params in sections().items() for key, p in params.items()]


def test_each_method_with_parameters_has_a_section_of_exactly_its_declared_keys():
    types_ = section_types()
    assert list(types_) == list(sections())
    for name, params in sections().items():
        assert [f.name for f in dataclasses.fields(types_[name])] == list(params), name
        assert all(f.default is None for f in dataclasses.fields(types_[name]))  # null = the published default
    with_params = {m for m in DISTILLERS.names() if DISTILLERS.get(m).declared_params}
    assert with_params | {"ctkd"} == set(types_)
    assert {"dkd", "crd", "dist", "reviewkd", "at", "cc", "ctkd"} <= set(types_)


@pytest.mark.parametrize(("name", "key", "param"), _sections(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_declared_default_validates_and_the_declared_range_is_enforced(name, key, param):
    text = yaml.safe_dump(param.default, default_flow_style=True).splitlines()[0]
    cfg = load_config(None, [f"distill.{name}.{key}={text}"])
    assert getattr(getattr(cfg.distill, name), key) == param.default
    if param.range is not None and param.range.lo is not None:
        below = param.range.lo if param.range.open_lo else param.range.lo - 1
        with pytest.raises(ConfigError, match=rf"^distill\.{name}\.{key}: must be "):
            load_config(None, [f"distill.{name}.{key}={below}"])


def test_a_method_sections_unset_keys_resolve_to_its_declared_defaults_and_are_recorded():
    cls = DISTILLERS.get("dkd")
    cfg = from_dict({"distill": {"method": "dkd", "dkd": {"nckd_weight": 4}}})
    assert cls.resolved_params(cfg.distill) == {**cls.defaults(), "nckd_weight": 4.0}
    assert cls.defaults() == {"weight": 1.0, "tckd_weight": 1.0, "nckd_weight": 8.0, "warmup_epochs": 20}
    saved = to_saved_dict(cfg)["distill"]
    assert saved["dkd"]["nckd_weight"] == 4.0 and "crd" not in saved and "ctkd" not in saved
    assert from_dict(to_saved_dict(cfg)) == cfg


def test_old_keys_and_typos_in_a_section_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"^unknown config key 'distill\.dkdd' \(did you mean distill\.dkd\?\)"):
        from_dict({"distill": {"dkdd": {}}})
    with pytest.raises(ConfigError, match=r"^distill\.cc\.form: expected 'repdistiller' \| 'paper' or null"):
        from_dict({"distill": {"cc": {"form": "x"}}})
    with pytest.raises(ConfigError, match=r"^unknown config key 'distill\.sections'"):
        from_dict({"distill": {"sections": {}}})


NEW_METHOD = '''
from dataclasses import dataclass
from mixkd.distill import Distiller, register
from mixkd.params import Count, NonNegative

@register("tinykd")
class TinyKD(Distiller):
    """A method written for this test, in a file of its own."""

    paper = "a test's own method, declared in one file"
    default_kd_weight = 0.5

    @dataclass
    class Params:
        weight: NonNegative = 0.25
        hops: Count = 3
'''


def test_a_method_in_one_new_file_gets_its_section_validation_and_listing(tmp_path):
    # a real process that imports only the new file: nothing else in mixkd names the method
    (tmp_path / "tinykd.py").write_text(NEW_METHOD)
    script = """
import json, sys
import tinykd  # noqa: F401
from mixkd.cli import main
from mixkd.config import ConfigError, load_config
cfg = load_config(None, ["distill.method=tinykd", "distill.tinykd.hops=5"])
print(json.dumps({"hops": cfg.distill.tinykd.hops, "weight": cfg.distill.tinykd.weight}))
try:
    load_config(None, ["distill.tinykd.hops=0"])
except ConfigError as e:
    print(json.dumps({"error": str(e)}))
sys.exit(main(["methods", "--json"]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert json.loads(lines[0]) == {"hops": 5, "weight": None}
    assert json.loads(lines[1]) == {"error": "distill.tinykd.hops: must be >= 1, got 0"}
    listing = {row["method"]: row for row in json.loads("\n".join(lines[2:]))}
    assert listing["tinykd"]["defaults"]["tinykd"] == {"weight": 0.25, "hops": 3}
    assert listing["tinykd"]["paper"] == "a test's own method, declared in one file"
