"""One exception tree. Inner code raises; only `mailctl.cli.main` turns these into exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_OPERATIONAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class MailctlError(Exception):
    """Base of every error mailctl reports to a person: one line, plus an optional hint."""

    exit_code = EXIT_OPERATIONAL
    prefix = "error: "  # what the one line starts with; a stop the operator asked for is no error

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UserError(MailctlError):
    """Bad input or usage: a file, row, field or argument the operator must fix. Exit 2."""

    exit_code = EXIT_USAGE


class ConfigError(UserError):
    """The operator config or the campaign file is invalid."""


class ValidationFailed(UserError):
    """Recipient rows failed their checks; nothing was enqueued."""

    def __init__(self, message: str, hint: str | None = None, problems: list | None = None):
        super().__init__(message, hint)
        self.problems = problems or []


class NotFound(UserError):
    """A job, message or resource named on the command line does not exist."""


class OperationalError(MailctlError):
    """AWS unreachable, access denied, a partial enqueue: the input was fine, the run was not. Exit 1."""


class AwsError(OperationalError):
    """An AWS call failed in a way the operator can act on."""


class EndpointUnreachable(AwsError):
    """No answer from the AWS (or local) endpoint at all: nothing else can be checked or done."""


class PartialEnqueue(OperationalError):
    """Some chunks did not reach the queue; the job can be resumed."""


class Interrupted(OperationalError):
    """Ctrl-C: stopped cleanly; the hint says how to resume. Exit 130."""

    exit_code = EXIT_INTERRUPTED
    prefix = ""


class CounterDrift(OperationalError):
    """`status --verify`: the job's counters disagree with its records. Exit 1."""


class CanaryHeld(OperationalError):
    """--canary-wait kept the job held: its canary did not come back clean (or in time). Exit 1."""


class Aborted(OperationalError):
    """The operator answered no at a confirmation: nothing was changed. Exit 1."""

    prefix = ""

    def __init__(self, message: str = "aborted", hint: str | None = None):
        super().__init__(message, hint)
