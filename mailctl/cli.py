"""The command line. Commands are thin: parse options, call one service function, render.

Exit codes are mapped here and nowhere else: 0 success, 1 operational failure or a "no" at a
confirmation, 2 bad input or usage, 130 interrupted (Ctrl-C).

Usage errors (unknown option or command, missing or invalid argument) are left to typer's own
standalone handling, which prints click's usage line and message on stderr and exits 2, whichever
click typer brings (recent typers vendor their own). Only mailctl's errors are mapped here, so this
module depends on no click or typer internals.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version

import typer
from rich.text import Text

from mailctl.console import err
from mailctl.context import AppContext
from mailctl.errors import EXIT_INTERRUPTED, EXIT_OPERATIONAL, Interrupted, MailctlError

app = typer.Typer(
    name="mailctl",
    help="Operate bulk mail on AWS: check and enqueue campaigns (SQS, S3 overflow), follow jobs, "
    "inspect and redrive dead letters. The sender itself is the Lambda in lambda/.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Each module registers its commands on `app`; the order is the order of `mailctl --help`.
COMMAND_MODULES = ("send", "status", "suppression", "dlq", "ops", "local")


def mailctl_version() -> str:
    try:
        return version("mailctl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"mailctl {mailctl_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: str = typer.Option(None, "--config", "-c", help="Operator config file (default: $MAILCTL_CONFIG, else ./mailctl.yaml).", show_default=False),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for unexpected errors.", envvar="MAILCTL_DEBUG"),
    _version: bool = typer.Option(False, "--version", help="Print mailctl's version and exit.", callback=_print_version, is_eager=True),
) -> None:
    ctx.obj = AppContext(config_path=config, debug=debug)


def _interruptible(callback: Callable) -> Callable:
    """Ctrl-C inside a command becomes mailctl's Interrupted (exit 130), whatever typer would make of it."""

    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None

    return run


def _commands(typer_app: typer.Typer) -> Iterator:
    yield from typer_app.registered_commands
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance)


for _name in COMMAND_MODULES:
    importlib.import_module(f"mailctl.commands.{_name}").register(app)
for _command in _commands(app):
    _command.callback = _interruptible(_command.callback)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("MAILCTL_DEBUG", "").lower() in {"1", "true", "yes"}


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"), as click does for some errors
    return EXIT_OPERATIONAL


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # A bare `mailctl` asks for the help, which is no error.
        app(args=argv or ["--help"], prog_name="mailctl", standalone_mode=True)
        return 0
    except SystemExit as exc:  # typer's standalone mode: success, --help, --version, usage errors
        return _exit_code(exc.code)
    except MailctlError as exc:
        err.print(Text.assemble((exc.prefix, "bold red"), exc.message), soft_wrap=True)
        if exc.hint:
            err.print(f"hint: {exc.hint}", markup=False, soft_wrap=True)
        if _debug_requested(argv):
            err.print_exception()
        return exc.exit_code
    except KeyboardInterrupt:  # outside any command: while typer parses, say
        err.print("interrupted", markup=False)
        return EXIT_INTERRUPTED
    except Exception:  # a bug: say so in one line unless asked for the traceback
        if _debug_requested(argv):
            raise
        exc_type, exc_value, _ = sys.exc_info()
        err.print(f"internal error: {exc_type.__name__}: {exc_value}", markup=False, soft_wrap=True)
        err.print("hint: rerun with --debug for the traceback, and report it", markup=False)
        return EXIT_OPERATIONAL


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
