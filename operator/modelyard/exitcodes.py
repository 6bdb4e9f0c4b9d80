"""Exit codes of the workloads, shared with the operator (which must not import workloads).

Besides 0, the operator tells these apart: 1 may be transient and is retried; the others fail
the same way every time, so the Job's pod failure policy fails the Job at once.
"""

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_OBJECTIVE_NOT_MET = 3
EXIT_INVALID_DATA = 4
