"""Command-line interface: ``spaner <subcommand>``."""
