"""``python -m videoworker`` is the ``videoworker`` command."""

from videoworker.cli import main

if __name__ == "__main__":
    main()
