"""The command line's contract, typed as people type it: wrong flags, missing arguments, unknown
commands, --help and --version, a stack that is down, output piped to another program.

Each test asserts the exit code and the first line of stderr, through `python -m mailctl` as a
separate process, on whatever typer and click versions the install resolved (CI installs fresh).
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from mailctl.cli import app
from tests.helpers import people, write_campaign


def mailctl(*args: str, cwd=None, stdin: str | None = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailctl", *args], capture_output=True, text=True, input=stdin, cwd=cwd, timeout=60)


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


@pytest.mark.parametrize("args, usage", [
    (["send", "--bogus", "x"], "Usage: mailctl send"),
    (["bogus"], "Usage: mailctl "),
    (["status"], "Usage: mailctl status"),
    (["status", "job-1", "--interval", "soon"], "Usage: mailctl status"),
    (["send", "campaign.yaml", "--limit", "0"], "Usage: mailctl send"),
    (["dlq", "redrive", "--rate", "fast"], "Usage: mailctl dlq redrive"),
    (["local", "up", "--port", "99999"], "Usage: mailctl local up"),
], ids=["unknown-option", "unknown-command", "missing-argument", "not-a-number", "below-minimum", "subcommand-bad-value", "out-of-range"])
def test_a_usage_error_shows_the_usage_line_and_exits_2(args, usage):
    result = mailctl(*args)
    assert result.returncode == 2, result.stderr
    assert first_line(result.stderr).startswith(usage), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_version_prints_the_installed_version():
    result = mailctl("--version")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, f"mailctl {version('mailctl')}", "")


def test_bare_mailctl_prints_the_help_and_no_error():
    result = mailctl()
    assert result.returncode == 0
    assert "Usage: mailctl" in result.stdout and "send" in result.stdout
    assert result.stderr == ""


def _command_paths(typer_app, prefix=()):
    for command in typer_app.registered_commands:
        yield (*prefix, command.name or command.callback.__name__)
    for group in typer_app.registered_groups:
        yield (*prefix, group.name)
        yield from _command_paths(group.typer_instance, (*prefix, group.name))


@pytest.mark.parametrize("path", sorted(_command_paths(app)), ids=" ".join)
def test_every_command_explains_itself(path):
    result = mailctl(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert f"Usage: mailctl {' '.join(path)}" in " ".join(result.stdout.split())
    assert result.stderr == ""


def test_a_confirmation_without_a_terminal_refuses_and_changes_nothing(config_file, stack, tmp_path):
    # Given a job, and a cancel typed without --yes where there is no terminal to ask on (a script)
    sent = mailctl("--config", config_file, "send", str(write_campaign(tmp_path / "c", people(2))), "--yes", "--json")
    job_id = sent.stdout.split('"job_id": "')[1].split('"')[0]
    result = mailctl("--config", config_file, "cancel", job_id)

    # Then it refuses in one line with the flag to pass, and the job is not cancelled
    assert result.returncode == 2, result.stderr
    assert first_line(result.stderr).startswith("error: refusing to go on without confirmation")
    assert "hint: pass --yes" in result.stderr
    assert '"state": "cancelled"' not in mailctl("--config", config_file, "status", job_id, "--json").stdout


@pytest.mark.parametrize("args", [["doctor"], ["status", "some-job"], ["jobs"], ["dlq", "list"], ["cancel", "some-job", "--yes"], ["pause"]],
                         ids=lambda args: args[0] if len(args) == 1 else " ".join(args[:2]))
def test_a_stack_that_is_down_is_one_line_from_every_command(tmp_path, args):
    config = tmp_path / "mailctl.yaml"
    config.write_text("aws:\n  region: us-east-1\n  endpoint_url: http://127.0.0.1:9\n", encoding="utf-8")
    result = mailctl("--config", str(config), *args)
    assert result.returncode == 1, result.stderr
    assert "cannot reach http://127.0.0.1:9" in first_line(result.stderr), result.stderr
    assert first_line(result.stderr).startswith("error: ")
    assert "internal error" not in result.stderr


def test_local_up_without_the_local_extra_says_which_extra(tmp_path):
    # moto is not installed (as after `pip install mailctl` without extras)
    code = "import sys; sys.modules['moto'] = None; from mailctl.cli import main; sys.exit(main(['local', 'up', '--port', '1']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert first_line(result.stderr) == "error: mailctl local up needs moto[server], which is not installed"
    assert "pip install 'mailctl[local]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_job_ids_are_whole_when_jobs_is_piped(config_file, stack, tmp_path):
    # Given a job whose id is longer than an 80-column table leaves room for
    campaign = write_campaign(tmp_path / "c", people(3))
    campaign.write_text(campaign.read_text(encoding="utf-8").replace("name: test-campaign", "name: a-rather-long-campaign-name-for-the-autumn-newsletter"), encoding="utf-8")
    sent = mailctl("--config", config_file, "send", str(campaign), "--yes", "--json")
    assert sent.returncode == 0, sent.stderr
    job_id = first_line(sent.stdout).split('"job_id": "')[1].split('"')[0]

    # When `mailctl jobs` writes to a pipe
    listed = mailctl("--config", config_file, "jobs")

    # Then the id is there whole, ready to copy into the next command
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout.split()
