"""`python -m server`: read settings from the environment, then serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from server.core.logging import configure_logging
from server.core.settings import SettingsError, load_settings
from server.serve import run_workers, serve


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.stderr.write(f"amesa: configuration error: {error}\n")
        sys.exit(2)
    configure_logging(settings.log_level)
    if settings.workers == 1:
        asyncio.run(serve(settings, serve_metrics=True))
    else:
        run_workers(settings)


if __name__ == "__main__":
    main()
