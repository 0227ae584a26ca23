import json
import re
import shutil
import subprocess

from deepspeech_it.config import VARIABLES
from deepspeech_it.paths import DECODER_LIBRARY

from conftest import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile.train.it"
SEED_ARGUMENTS = {"batch_size", "epochs", "epoch", "learning_rate", "dropout", "lm_alpha", "lm_beta",
                  "english_compatible", "lm_evaluate_range", "amp", "kenlm_version"}


def _final_stage() -> str:
    return DOCKERFILE.read_text(encoding="utf-8").split("\nFROM ")[-1]


def _instruction(stage: str, keyword: str) -> list[str]:
    """The instructions KEYWORD of STAGE, with continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", stage)
    return [line[len(keyword) + 1:].strip() for line in joined.splitlines() if line.startswith(keyword + " ")]


def test_hadolint_reports_nothing_above_info():
    hadolint = shutil.which("hadolint") or str(PROJECT_ROOT / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True)
    findings = json.loads(result.stdout or "[]")
    assert [f for f in findings if f["level"] in ("error", "warning")] == []


def test_every_build_argument_reaches_a_listed_variable():
    stage = _final_stage()
    arguments = {a.split("=")[0] for a in _instruction(stage, "ARG")}
    assert SEED_ARGUMENTS <= arguments
    environment = " ".join(_instruction(stage, "ENV"))
    assignments = dict(re.findall(r"([A-Z_]+)=(\S+)", environment))
    listed = {v.name for v in VARIABLES}
    assert set(assignments) - {"PYTHONDONTWRITEBYTECODE", "HOME"} <= listed
    used = {argument for value in assignments.values() for argument in re.findall(r"\$\{(\w+)", value)}
    build_only = {"kenlm_version", "tensorflow"}
    assert arguments - build_only <= used, "a build argument that reaches no variable would be ignored"
    assert all(f"${{{name}}}" in " ".join(_instruction(stage, "RUN")) for name in build_only)
    assert assignments["DATA_DIR"] == "/mnt" and assignments["TRANSFER_CHECKPOINT_DIR"] == "/transfer-checkpoint"


def test_seed_spelling_epoch_wins_over_epochs():
    [epochs] = [v for k, v in re.findall(r"([A-Z_]+)=(\S+)", " ".join(_instruction(_final_stage(), "ENV")))
                if k == "EPOCHS"]
    assert epochs == "${epoch:-${epochs}}"


def test_image_runs_make_train_as_the_trainer_user():
    stage = _final_stage()
    assert _instruction(stage, "CMD") == ['["make", "train"]']
    assert _instruction(stage, "USER") == ["999:999"]
    assert "--uid 999" in " ".join(_instruction(stage, "RUN"))
    assert "scripts/build_kenlm.sh" in DOCKERFILE.read_text(), "KenLM is built with the recipe of make setup"


def test_image_gets_the_decoder_built_from_the_source_it_copies():
    text = DOCKERFILE.read_text()
    assert "COPY deepspeech_it/decode/ctc_beam_search.cc deepspeech_it/decode/ctc_beam_search.cc" in text, "the build stage compiles the decoder source"
    copied = [line for line in _instruction(_final_stage(), "COPY") if "--from=kenlm" in line]
    assert any(DECODER_LIBRARY.name in line and line.split()[-1] == "tools/kenlm/lib/" for line in copied)


def _stages() -> list[str]:
    return DOCKERFILE.read_text(encoding="utf-8").split("\nFROM ")[1:]


def test_pip_gets_the_build_secrets_only_while_it_runs():
    """Every step that downloads mounts the pip configuration as a BuildKit secret; no step stores it."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    downloading = [run for stage in _stages() for run in _instruction(stage, "RUN")
                   if re.search(r"pip (install|wheel|download)|build_kenlm\.sh|client_libraries", run)
                   and "--no-deps --no-build-isolation -e ." not in run]
    assert len(downloading) == 4
    for run in downloading:
        assert "--mount=type=secret,id=pipconf" in run and "--mount=type=secret,id=pipca" in run, run
        assert "PIP_CONFIG_FILE=/run/secrets/pipconf" in run, run
    assert "PIP_CONFIG_FILE" not in " ".join(_instruction(_final_stage(), "ENV"))
    assert not re.search(r"^(COPY|ADD) .*(pip\.conf|\.pem)", text, re.M)


def test_image_has_the_native_clients_from_setup_time():
    copied = _instruction(_final_stage(), "COPY")
    assert "--from=clients /build/native-clients tools/native-clients" in copied
    [clients_stage] = [stage for stage in _stages() if stage.split()[1:3] == ["AS", "clients"]]
    assert any("python3 -m deepspeech_it.export.client_libraries /build/native-clients" in run
               for run in _instruction(clients_stage, "RUN"))
