"""Entry point of the packaged app. freeze_support() lets the llama.cpp worker, a spawned
process, start from the frozen executable."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.ui.cli import main

    sys.exit(main())
