"""A mixing's own keys (mixing.switch_prob, mixing.candidates, ...) are declared once, in its file (`Params`):
config validates them, config.yaml keeps those its mixing reads, `mixkd mixings` and a report's label read them."""

import dataclasses
import json
import subprocess
import sys

import pytest

from mixkd.config import ConfigError, from_dict, mixing_keys_type, mixing_unread_keys, to_saved_dict
from mixkd.mixing import MIXERS, own_keys, own_params


def test_the_mixing_keys_are_exactly_those_the_mixers_declare():
    declared = {key for name in MIXERS.names() for key in own_params(MIXERS.get(name))}
    assert {f.name for f in dataclasses.fields(mixing_keys_type())} == declared
    assert declared == {"switch_prob", "cutmix_alpha", "candidates"}
    assert mixing_unread_keys("cutmix-pick") == {"switch_prob", "cutmix_alpha"}
    assert mixing_unread_keys("mixup") == declared
    params, docs = own_keys()
    assert set(docs) == set(params) and all(docs.values())


def test_a_mixing_key_is_validated_and_kept_only_for_the_mixing_that_reads_it():
    with pytest.raises(ConfigError, match=r"^mixing\.candidates: must be <= 64, got 65$"):
        from_dict({"mixing": {"name": "cutmix-pick", "candidates": 65}})
    with pytest.raises(ConfigError, match=r"did you mean mixing\.switch_prob\?"):
        from_dict({"mixing": {"name": "mixup-cutmix", "swich_prob": 0.2}})
    pick = from_dict({"mixing": {"name": "cutmix-pick", "candidates": 4}})
    assert pick.mixing.candidates == 4 and pick.mixing.switch_prob == 0.5
    saved = to_saved_dict(pick)["mixing"]
    assert saved["candidates"] == 4 and "switch_prob" not in saved
    assert from_dict(to_saved_dict(pick)) == pick


NEW_MIXING = '''
from dataclasses import dataclass
from typing import ClassVar

from mixkd.mixing import MIXERS
from mixkd.mixing.none import NoMixing
from mixkd.params import Count


@MIXERS.register("tinymix")
class TinyMix(NoMixing):
    """A mixing written for this test, in a file of its own (it mixes nothing)."""

    paper = "a test's own mixing, declared in one file"
    reads = ("alpha", "fraction")
    label = ("tiles", "k")

    @dataclass
    class Params:
        docs: ClassVar[dict[str, str]] = {"tiles": "tinymix: tiles per image"}

        tiles: Count = 3
'''

SCRIPT = """
import json, sys
import tinymix  # noqa: F401
from mixkd.analysis.report import mixing_label
from mixkd.cli import main
from mixkd.config import ConfigError, from_dict, to_saved_dict
from mixkd.reference import configuration_table
cfg = from_dict({"mixing": {"name": "tinymix", "tiles": 5}})
print(json.dumps({"tiles": cfg.mixing.tiles, "saved": to_saved_dict(cfg)["mixing"],
                  "mixup_saved": to_saved_dict(from_dict({"mixing": {"name": "mixup"}}))["mixing"],
                  "label": mixing_label({"mixing": to_saved_dict(cfg)["mixing"]}),
                  "documented": "| `mixing.tiles` | integer | 3 | ≥ 1 | tinymix: tiles per image |" in
                                configuration_table()}))
try:
    from_dict({"mixing": {"name": "tinymix", "tiles": 0}})
except ConfigError as e:
    print(json.dumps({"error": str(e)}))
sys.exit(main(["mixings", "--json"]))
"""


def test_a_mixing_in_one_new_file_gets_its_key_validation_listing_and_label(tmp_path):
    # a real process that imports only the new file: nothing else in mixkd names the mixing or its key
    (tmp_path / "tinymix.py").write_text(NEW_MIXING)
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    first = json.loads(lines[0])
    assert first["tiles"] == 5 and first["saved"]["tiles"] == 5 and "tiles" not in first["mixup_saved"]
    assert first["label"] == "tinymix 100% α=1 k=5" and first["documented"]
    assert json.loads(lines[1]) == {"error": "mixing.tiles: must be >= 1, got 0"}
    listing = {row["mixing"]: row for row in json.loads("\n".join(lines[2:]))}
    assert listing["tinymix"]["reads"] == {"alpha": 1.0, "fraction": 1.0, "tiles": 3}


def test_two_mixings_that_declare_one_key_differently_are_refused(tmp_path):
    (tmp_path / "tinymix.py").write_text(NEW_MIXING)
    clash = NEW_MIXING.replace('"tinymix"', '"othermix"').replace("TinyMix", "OtherMix").replace("= 3", "= 4")
    (tmp_path / "othermix.py").write_text(clash)
    script = "import tinymix, othermix\nfrom mixkd.config import MixingConfig\nMixingConfig()\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "mixing.tiles is declared differently by" in out.stderr
