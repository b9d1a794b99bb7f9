"""``make build`` finds a Python 3.12 for SAM, or Docker, or says how to get one (local_stack/build.py).

Each case runs with a PATH of stand-in programs, so it does not depend on what this machine has.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from local_stack import build


def program(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    # sh and the coreutils the stand-ins use, nothing else of the machine's.
    for tool in ("sh", "cat"):
        real = shutil.which(tool, path=os.defpath)
        assert real, tool
        (tmp_path / tool).symlink_to(real)
    return tmp_path


def test_a_python312_on_path_that_runs_is_used(bin_dir: Path) -> None:
    program(bin_dir, "python3.12", "echo 3.12")
    chosen = build.plan({"PATH": str(bin_dir)})
    assert chosen is not None and chosen.how.startswith("python3.12 on PATH") and chosen.args == []


def test_a_python312_shim_that_does_not_run_is_not_enough(bin_dir: Path) -> None:
    """pyenv's shim exists whether or not 3.12 is selected: it has to run. Without pyenv,
    uv or Docker there is no way, and the message says how to get one."""
    program(bin_dir, "python3.12", "echo 'pyenv: python3.12: command not found' >&2; exit 127")
    assert build.plan({"PATH": str(bin_dir)}) is None


def test_pyenv_with_a_312_installed_is_selected_for_the_build_only(bin_dir: Path) -> None:
    program(bin_dir, "python3.12", 'case "$PYENV_VERSION" in *3.12.1*) echo 3.12;; *) exit 127;; esac')
    program(
        bin_dir,
        "pyenv",
        'case "$1" in versions) printf "3.11.7\\n3.12.0\\n3.12.1\\n";; version-name) echo 3.11.7;; esac',
    )
    chosen = build.plan({"PATH": str(bin_dir)})
    assert chosen is not None and chosen.env == {"PYENV_VERSION": "3.11.7:3.12.1"}


def test_docker_that_answers_builds_in_a_container(bin_dir: Path) -> None:
    program(bin_dir, "docker", 'test "$1" = info && echo 28.2.2')
    chosen = build.plan({"PATH": str(bin_dir)})
    assert chosen is not None and chosen.args == ["--use-container"]


def test_docker_without_a_daemon_is_no_way(bin_dir: Path) -> None:
    program(bin_dir, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    assert build.plan({"PATH": str(bin_dir)}) is None


def test_no_way_says_exactly_how_to_get_one(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(bin_dir))
    assert build.main(["--plan"]) == 2
    err = capsys.readouterr().err
    assert "pyenv install 3.12" in err and "--use-container" in err and "uv python install 3.12" in err
