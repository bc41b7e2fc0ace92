"""The `suite-daemon` command line (contract: Command line)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from suite_daemon import __version__
from suite_daemon.config import EXIT_CONFIG, ConfigError, SuiteConfig, config_path, load_config

EXIT_USAGE = 64
EXIT_UNAVAILABLE = 69


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $SUITE_DAEMON_CONFIG or /etc/suite-daemon/suite.toml)",
    )


def build_parser() -> Parser:
    parser = Parser(prog="suite-daemon", description=__doc__)
    parser.add_argument("--version", action="version", version=f"suite-daemon {__version__}")
    _common(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    _common(sub.add_parser("run", help="run the daemon in the foreground"))
    _common(sub.add_parser("check-config", help="validate the config, reporting every error"))
    p = sub.add_parser("simulate", help="simulated devices and modality against a running daemon")
    p.add_argument("--scenario", default="default")
    p.add_argument("--no-modality", action="store_true", help="only the serial devices")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    _common(p)
    p = sub.add_parser("procedures", help="list procedures, newest first")
    p.add_argument("--json", action="store_true")
    _common(p)
    p = sub.add_parser("show", help="one procedure")
    p.add_argument("procedure_id")
    p.add_argument("--json", action="store_true")
    _common(p)
    audit = sub.add_parser("audit", help="audit journal tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, parser_class=Parser)
    p = audit_sub.add_parser("verify", help="check the hash chain of one or all procedures")
    p.add_argument("procedure_id", nargs="?")
    _common(p)
    p = sub.add_parser("report", help="per-procedure report with a timeline plot")
    p.add_argument("procedure_id")
    p.add_argument("--format", choices=["html", "pdf", "json"], required=True)
    p.add_argument("-o", "--output", required=True, type=Path)
    _common(p)
    p = sub.add_parser("tail", help="live events from the broker")
    p.add_argument("--procedure", default=None)
    p.add_argument("--json", action="store_true")
    _common(p)
    p = sub.add_parser("procedure", help="operator commands: open or close a procedure through the daemon")
    p.add_argument("action", choices=["open", "close"])
    p.add_argument("--study-instance-uid", default=None)
    p.add_argument("--accession-number", default=None)
    p.add_argument("--operator", default=None)
    p.add_argument("--reason", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=10.0)
    _common(p)
    return parser


def _load(args: argparse.Namespace) -> SuiteConfig:
    return load_config(config_path(getattr(args, "config", None)))


def _config_errors(exc: ConfigError) -> int:
    for line in exc.lines():
        print(line, file=sys.stderr)
    return EXIT_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(getattr(args, "config", None))
    config = load_config(path)
    print(f"{path}: valid ({len(config.devices)} devices, suite {config.suite.id})", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from suite_daemon.daemon.app import Daemon
    from suite_daemon.daemon.wiring import build_components, build_correlator
    from suite_daemon.log_setup import configure_logging

    config = _load(args)
    configure_logging(config.suite.log_level, config.suite.log_format)
    return asyncio.run(Daemon(config, build_components, build_correlator).run())


def cmd_simulate(args: argparse.Namespace) -> int:
    from suite_daemon.log_setup import configure_logging
    from suite_daemon.simulation import scenarios, simulate

    config = _load(args)
    if args.scenario not in scenarios():
        print(
            f"suite-daemon simulate: unknown scenario {args.scenario!r} (known: {', '.join(scenarios())})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    configure_logging(config.suite.log_level, "console" if sys.stderr.isatty() else "json")
    return asyncio.run(simulate(config, args.scenario, modality=not args.no_modality, duration_s=args.duration))


def cmd_procedures(args: argparse.Namespace) -> int:
    from suite_daemon.inspect.commands import cmd_procedures as run

    return run(_load(args), args.json)


def cmd_show(args: argparse.Namespace) -> int:
    from suite_daemon.inspect.commands import cmd_show as run

    return run(_load(args), args.procedure_id, args.json)


def cmd_audit(args: argparse.Namespace) -> int:
    from suite_daemon.inspect.commands import cmd_audit_verify

    return cmd_audit_verify(_load(args), args.procedure_id)


def cmd_report(args: argparse.Namespace) -> int:
    from suite_daemon.inspect.commands import cmd_report as run

    return run(_load(args), args.procedure_id, args.format, args.output)


def cmd_procedure(args: argparse.Namespace) -> int:
    from suite_daemon.correlator.operator_cli import cmd_procedure as run

    return run(
        _load(args),
        args.action,
        args.study_instance_uid,
        args.accession_number,
        args.operator,
        args.reason,
        args.json,
        args.timeout,
    )


def cmd_tail(args: argparse.Namespace) -> int:
    from suite_daemon.tail import tail

    return asyncio.run(tail(_load(args), args.procedure, args.json))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "run": cmd_run,
        "check-config": cmd_check_config,
        "simulate": cmd_simulate,
        "procedures": cmd_procedures,
        "show": cmd_show,
        "audit": cmd_audit,
        "report": cmd_report,
        "tail": cmd_tail,
        "procedure": cmd_procedure,
    }
    handler = handlers.get(args.command)
    if handler is None:
        print(f"suite-daemon: {args.command} is not available in this build", file=sys.stderr)
        return 1
    try:
        return handler(args)
    except ConfigError as exc:
        return _config_errors(exc)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
