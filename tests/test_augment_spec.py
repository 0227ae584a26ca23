"""AUGMENT's syntax: DeepSpeech 0.9.3's --augment specifications, their defaults, ranges and refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from deepspeech_it.config import ConfigError, load_config
from deepspeech_it.model.augment_signal import pick
from deepspeech_it.model.augment_spec import CATALOGUE, ValueRange, parse_augment, parse_range, split_specs
from tests.conftest import PROJECT_ROOT, stage_env


def test_every_deepspeech_augmentation_with_its_defaults_and_domain():
    parsed = {a.name: a for a in parse_augment(" ".join(n for n in CATALOGUE if n != "overlay"))}
    assert set(parsed) | {"overlay"} == {"overlay", "reverb", "resample", "codec", "volume", "pitch", "tempo", "warp",
                                         "frequency_mask", "time_mask", "dropout", "add", "multiply"}
    assert parsed["reverb"]["delay"] == ValueRange(20.0, 20.0, 0.0) and parsed["reverb"]["decay"].start == 10.0
    assert parsed["resample"]["rate"] == ValueRange(8000, 8000, 0, whole=True)
    assert parsed["codec"]["bitrate"].start == 3200 and parsed["volume"]["dbfs"].start == 3.0103
    assert parsed["pitch"]["pitch"] == ValueRange(1.075, 1.075, 0.125)
    assert parsed["tempo"]["factor"].start == 1.1 and parsed["tempo"]["max_time"] == -1
    assert (parsed["warp"]["nt"].start, parsed["warp"]["nf"].start, parsed["warp"]["wt"].start,
            parsed["warp"]["wf"].start) == (1, 1, 0.1, 0.0)
    assert (parsed["frequency_mask"]["n"].start, parsed["frequency_mask"]["size"].start) == (3, 2)
    assert (parsed["time_mask"]["n"].start, parsed["time_mask"]["size"].start) == (3, 10.0)
    assert parsed["dropout"]["rate"].start == 0.05 and parsed["add"]["stddev"].start == 5
    domains = {name: a.domain for name, a in parsed.items()}
    assert domains["reverb"] == domains["codec"] == "sample"
    assert domains["pitch"] == domains["tempo"] == domains["time_mask"] == domains["dropout"] == "spectrogram"
    assert domains["add"] == domains["multiply"] == "features"
    assert all(a.p == 1.0 for a in parsed.values())


def test_ranges_tilde_values_and_their_types():
    assert parse_range("2", True) == ValueRange(2, 2, 0, True)
    assert parse_range("1:3", True) == ValueRange(1, 3, 0, True)
    assert parse_range("0.5:1.5~0.1", False) == ValueRange(0.5, 1.5, 0.1)
    assert parse_range("1.1~0.2", False) == ValueRange(1.1, 1.1, 0.2)
    for bad, whole in (("1.5", True), ("1:2:3", False), ("1~2~3", False), ("x", False), ("", False)):
        with pytest.raises(ValueError):
            parse_range(bad, whole)


def test_parameters_order_domains_and_spaces_inside_brackets(tmp_path):
    specs = parse_augment(f"reverb[p=0.3, delay=50:150] time_mask[domain=signal,n=2] overlay[source={tmp_path}] "
                          "warp[num_t=2] volume")
    assert [a.name for a in specs] == ["reverb", "time_mask", "overlay", "warp", "volume"]
    assert specs[0].p == 0.3 and specs[0]["delay"] == ValueRange(50.0, 150.0, 0.0)
    assert specs[1].domain == "signal" and specs[1]["n"].start == 2
    assert specs[2]["source"] == str(tmp_path)
    assert specs[3]["nt"].start == 2                       # Coqui STT's name for DeepSpeech's nt
    assert split_specs("  a[x=1, y=2]   b ") == ["a[x=1, y=2]", "b"]


@pytest.mark.parametrize("spec, says", [
    ("echo", "unknown augmentation 'echo'"),
    ("Reverb", "allowed: name or name[key=value"),
    ("reverb[delay=20", "allowed: name or name[key=value"),
    ("reverb[bogus=1]", "reverb has no parameter 'bogus'; allowed: p, delay, decay"),
    ("reverb[delay]", "'delay' is not key=value"),
    ("frequency_mask[n=1.5]", "allowed: a whole number"),
    ("volume[dbfs=loud]", "allowed: a number or range"),
    ("reverb[p=1.5]", "allowed: a probability from 0 to 1"),
    ("dropout[domain=cepstrum]", "allowed: signal, spectrogram, features"),
    ("tempo[factor=0:1]", "allowed: values > 0"),
    ("overlay", "overlay needs source="),
    ("overlay[source=/no/such/noise]", "allowed: an existing CSV file or folder"),
])
def test_bad_specifications_are_refused_naming_the_spec(spec, says):
    with pytest.raises(ConfigError) as refused:
        load_config({"AUGMENT": f"volume {spec}"})
    message = str(refused.value)
    assert message.startswith("AUGMENT=") and f"'{spec}'" in message and says in message and "\n" not in message


def test_a_bad_spec_stops_the_training_stage_with_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "04_train.py")],
                            env=stage_env(tmp_path, AUGMENT="reverb[decay=much]"), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "reverb[decay=much]" in result.stderr


def test_clock_ramps_the_range_and_tilde_spreads_around_it():
    rng = np.random.default_rng(0)
    ramp = ValueRange(0.0, 10.0, 0.0)
    assert [pick(ramp, clock, rng) for clock in (0.0, 0.5, 1.0, 2.0)] == [0.0, 5.0, 10.0, 10.0]
    assert pick(ValueRange(1, 4, 0, True), 0.5, rng) in (2, 3) and isinstance(pick(ValueRange(1, 4, 0, True), 0.5, rng), int)
    spread = [pick(ValueRange(1.0, 1.0, 0.25), 0.3, rng) for _ in range(2000)]
    assert 0.75 <= min(spread) < 0.77 and 1.23 < max(spread) <= 1.25 and abs(np.mean(spread) - 1.0) < 0.02
