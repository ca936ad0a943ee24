"""Entry points of the ``hwnas`` CLI and of the ``profile-device`` / ``search`` scripts.

Every subcommand lives in one module of this package; this file only wires
them together and turns every expected error into one line and exit status 2.
"""

from __future__ import annotations

import sys

import click

from hwnas import __version__
from hwnas.cli import deploy_cmd, latency_cmd, models_cmd, proxies_cmd, search_cmd, sweep_cmd, train_cmd
from hwnas.errors import HwnasError, one_line

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="hwnas")
def cli() -> None:
    """Hardware-aware, latency-constrained neural architecture search.

    \b
    Example:
      hwnas models list
      hwnas search --latency-ms 5 --iterations 2000
    """


for _module in (models_cmd, proxies_cmd, latency_cmd, search_cmd, sweep_cmd, deploy_cmd, train_cmd):
    for _command in _module.commands:
        cli.add_command(_command)


def _run(command: click.Command, prog_name: str, args: list[str] | None = None) -> None:
    """Run a click command; expected errors become one line on stderr and exit 2."""
    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.ClickException as err:  # a usage error too
        click.echo(f"{prog_name}: error: {one_line(err.format_message())}", err=True)
        sys.exit(2)
    except HwnasError as err:
        click.echo(f"{prog_name}: error: {one_line(str(err))}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo(f"{prog_name}: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo(f"{prog_name}: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def main(args: list[str] | None = None) -> None:
    _run(cli, "hwnas", args)


def profile_device_main(args: list[str] | None = None) -> None:
    _run(cli.commands["profile-device"], "profile-device", args)


def search_main(args: list[str] | None = None) -> None:
    _run(cli.commands["search"], "search", args)
