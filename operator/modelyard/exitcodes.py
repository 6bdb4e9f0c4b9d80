"""Exit codes of the workloads and the `modelyard` command, in one place.

Workloads share them with the operator (which must not import workloads). Besides 0, the
operator tells these apart: 1 may be transient and is retried; the others fail the same way
every time, so the Job's pod failure policy fails the Job at once.

The `modelyard` command uses 1 for a failure it reports in one line (not found, no cluster,
a resource in the chain that failed), 2 for a usage mistake, EXIT_TIMEOUT when
`modelyard wait` gives up, and EXIT_INTERRUPTED when stopped with Ctrl-C.
"""

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_OBJECTIVE_NOT_MET = 3
EXIT_INVALID_DATA = 4
EXIT_TIMEOUT = 5
EXIT_ENGINE_LOST = 6
# 128 + SIGINT, as shells report a command stopped with Ctrl-C.
EXIT_INTERRUPTED = 130
