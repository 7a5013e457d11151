"""The exit codes of the ``whisperpool`` command (see the package docstring)."""

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_START_FAILED = 3
