"""CLI subcommands of the benchmark harness (bench, report)."""


def add_commands(sub, commands: dict) -> None:
    """Add subparsers to `sub` and their handlers to `commands` (name -> function(args))."""
