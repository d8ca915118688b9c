"""The CLI surface: help is instant and torch-free, errors name the flag and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgclf.cli import COMMANDS, main


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from imgclf.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out


def test_bad_values_are_all_reported_with_their_flags(tmp_path, capsys) -> None:
    code = main(["prepare", str(tmp_path), str(tmp_path / "out"), "--val", "1.5", "--jpg-quality", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--val" in err and "--jpg-quality" in err


def test_unknown_choice_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(tmp_path), str(tmp_path / "o"), "--mode", "purple"])
    assert exit_info.value.code == 2


def test_config_file_is_read_and_flags_override_it(tmp_path) -> None:
    from imgclf.cli import make_config

    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 7\nbatch-size = 16\nmilestones = [3, 5]\n')
    cfg = make_config("train", {"data": tmp_path, "epochs": 9}, toml)
    assert (cfg.epochs, cfg.batch_size, cfg.milestones) == (9, 16, (3, 5))


def test_config_file_with_unknown_key_names_it(tmp_path, capsys) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("epoks = 7\n")
    assert main(["train", str(tmp_path), "--config", str(toml)]) == 2
    assert "epoks" in capsys.readouterr().err


def test_field_declarations_check_values_and_name_the_flags(tmp_path, capsys) -> None:
    """Bounds are declared on the fields: every command checks them alike, all problems at once."""
    assert main(["train", str(tmp_path), "--lr", "0", "--label-smoothing", "1", "--epochs", "0",
                 "--kd-alpha", "1.5", "--threshold", "1"]) == 2
    err = capsys.readouterr().err
    for expected in ("--lr: must be positive, got 0", "--label-smoothing: must be in [0, 1), got 1",
                     "--epochs: must be at least 1, got 0", "--kd-alpha: must be in [0, 1], got 1.5",
                     "--threshold: must be in (0, 1), got 1"):
        assert expected in err
    for command in (["evaluate", str(tmp_path)], ["predict", str(tmp_path), str(tmp_path)]):
        assert main([*command, "--batch-size", "0"]) == 2
        assert "--batch-size: must be at least 1, got 0" in capsys.readouterr().err


def test_resume_may_change_exactly_the_fields_declared_resumable() -> None:
    from imgclf.config import TrainConfig
    from imgclf.config.fields import resumable_fields

    resumable = set(resumable_fields(TrainConfig))
    assert {"epochs", "device", "nproc", "eval_every", "eval_batches", "save_every", "workers", "cache",
            "cache_gb"} <= resumable                                       # how long and where it runs
    assert not resumable & {"model", "lr", "batch_size", "seed", "img_size", "loss", "data", "trust_model_code"}
