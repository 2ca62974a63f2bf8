"""The command line: ``icf-stream`` subcommands that are more than a few lines (serve, predict, preflight, console)."""
