"""One module per subcommand: the thin CLI layer over the silent core.

Each module defines ``HELP`` (one line), ``configure(parser)`` (argparse options) and
``execute(args, ui) -> int`` (calls the core, draws results with ``ui``, returns an exit
code). Errors are raised as :mod:`patcher.errors` exceptions; patcher/cli.py maps them to
exit codes and messages.
"""

# subcommand name -> module under patcher.commands (order = order in --help)
COMMANDS = {
    "apply": "apply",
    "status": "status",
    "build": "build",
    "export": "export",
    "verify": "verify",
    "build-engine": "build_engine",
    "bench": "bench",
    "bench-dcn": "bench_dcn",
    "doctor": "doctor",
    "demo": "demo",
}
