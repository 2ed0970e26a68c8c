"""Which instance (database) the CLI uses when SFBRIDGE_INSTANCE_DIR is not set, and that a
command run outside the project folder refuses instead of creating a second database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.config import Settings, find_instance_dir


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("SFBRIDGE_DATABASE_URL", "SFBRIDGE_INSTANCE_DIR", "SFBRIDGE_CONFIG"):
        monkeypatch.delenv(key, raising=False)


def test_the_nearest_instance_with_a_database_wins(tmp_path: Path) -> None:
    project = tmp_path / "project"
    deep = project / "docs" / "notes"
    deep.mkdir(parents=True)
    assert find_instance_dir(deep) == deep / "instance"  # none yet: where one would be made
    (project / "instance").mkdir()
    assert find_instance_dir(deep) == deep / "instance"  # a folder without a database is not one
    (project / "instance" / "sfbridge.db").write_bytes(b"")
    assert find_instance_dir(deep) == project / "instance"
    # the demo keeps its config in the instance: SFBRIDGE_CONFIG leads there from anywhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = project / "instance" / "demo.yaml"
    assert find_instance_dir(elsewhere, str(config)) == project / "instance"
    env = {"SFBRIDGE_CONFIG": str(config)}
    assert Settings.from_env(env).instance_dir == str(project / "instance")
    assert Settings.from_env({**env, "SFBRIDGE_INSTANCE_DIR": "x"}).instance_dir == "x"


def test_outside_the_project_the_cli_refuses_and_creates_nothing(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bare_env: None
) -> None:
    outside = tmp_path / "somewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    result = runner.invoke(main, ["tokens", "list"])
    assert result.exit_code == 1
    assert f"no sfbridge database in {outside / 'instance'}" in result.output
    assert "set SFBRIDGE_INSTANCE_DIR or SFBRIDGE_DATABASE_URL" in result.output
    assert list(outside.iterdir()) == []  # no empty database left behind

    created = runner.invoke(main, ["db", "upgrade"])
    assert created.exit_code == 0 and "created a new database at" in created.output
    again = runner.invoke(main, ["db", "upgrade"])
    assert "is up to date" in again.output
    sub = outside / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert runner.invoke(main, ["tokens", "list"]).exit_code == 0  # found one folder up
    assert not (sub / "instance").exists()


def test_an_instance_dir_without_a_database_is_named(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bare_env: None
) -> None:
    monkeypatch.setenv("SFBRIDGE_INSTANCE_DIR", str(tmp_path / "gone"))
    result = runner.invoke(
        main, ["users", "add", "a@example.com", "--role", "admin", "--password-stdin"], input="x\n"
    )
    assert result.exit_code == 1
    assert f"SFBRIDGE_INSTANCE_DIR ({tmp_path / 'gone'}) has no sfbridge.db" in result.output
    assert not (tmp_path / "gone" / "sfbridge.db").exists()
