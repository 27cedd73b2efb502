"""Weightscope: see what is inside a neural-network checkpoint.

``python main.py`` opens the app; ``python main.py PATH...`` opens those models;
``python main.py info|stats|report ...`` runs headless commands.
Heavy modules (torch, Qt) are imported only by the command that needs them.
"""

from __future__ import annotations

import sys

# subcommand name -> module with add_arguments(parser) and run(args) -> int
COMMANDS = {
    "info": "core.commands.info",
    "stats": "core.commands.stats",
    "spectra": "core.commands.spectra",
    "report": "gui.report_command",
    "memory": "core.commands.memory",
    "diff": "core.commands.diff",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return _run_command(argv[0], argv[1:])
    from gui.launch import launch

    return launch(argv)


def _run_command(name: str, argv: list[str]) -> int:
    """Run a subcommand inside the error boundary, so even a failing import ends in one `error:` line."""
    import argparse
    import importlib

    from core.commands.common import run_guarded

    def run() -> int:
        module = importlib.import_module(COMMANDS[name])
        parser = argparse.ArgumentParser(prog=f"main.py {name}", description=(module.__doc__ or "").strip())
        module.add_arguments(parser)
        args = parser.parse_args(argv)
        return module.run(args)

    return run_guarded(run, f"starting the {name} command")


if __name__ == "__main__":
    sys.exit(main())
