"""The command line. Commands are thin: parse options, call one service function, render.

Exit codes are mapped here and nowhere else: 0 success, 1 operational failure, 2 bad input or usage.
"""

from __future__ import annotations

import importlib
import os
import sys

import click
import typer
from rich.text import Text

from mailctl.console import err
from mailctl.context import AppContext
from mailctl.errors import EXIT_OPERATIONAL, EXIT_USAGE, MailctlError

app = typer.Typer(
    name="mailctl",
    help="Operate bulk mail on AWS: check and enqueue campaigns (SQS, S3 overflow), follow jobs, "
    "inspect and redrive dead letters. The sender itself is the Lambda in lambda/.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Each module registers its commands on `app`; the order is the order of `mailctl --help`.
COMMAND_MODULES = ("send", "status", "dlq", "ops", "local")


@app.callback()
def _root(
    ctx: typer.Context,
    config: str = typer.Option(None, "--config", "-c", help="Operator config file (default: $MAILCTL_CONFIG, else ./mailctl.yaml).", show_default=False),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for unexpected errors.", envvar="MAILCTL_DEBUG"),
) -> None:
    ctx.obj = AppContext(config_path=config, debug=debug)


for _name in COMMAND_MODULES:
    importlib.import_module(f"mailctl.commands.{_name}").register(app)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("MAILCTL_DEBUG", "").lower() in {"1", "true", "yes"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, prog_name="mailctl", standalone_mode=False)
        return 0
    except MailctlError as exc:
        err.print(Text.assemble(("error: ", "bold red"), exc.message), soft_wrap=True)
        if exc.hint:
            err.print(f"hint: {exc.hint}", markup=False, soft_wrap=True)
        if _debug_requested(argv):
            err.print_exception()
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted", markup=False)
        return EXIT_OPERATIONAL
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show(file=sys.stderr)
        return EXIT_USAGE
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
