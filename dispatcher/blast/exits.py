"""A blast's exit codes (README "Exit codes"); the daemon follows the same table."""

EXIT_OK = 0  # every record was sent
EXIT_FAILURES = 1  # the run finished, and some records failed or were rejected
EXIT_CONFIG = 2  # configuration, input, or what they name cannot be used: one line, nothing sent
EXIT_DEFERRED = 3  # deferred records remain (a provider halted); `dispatcher reports`: reports still pending
EXIT_INTERRUPTED = 130  # stopped by a signal
