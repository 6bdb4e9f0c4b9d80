"""`modelyard-worker serve`: a fast scikit-learn model server (Open Inference Protocol V2 and
KServe V1), one module per job:

    config    flags and environment          loader   fetch, verify, unpickle
    model     the model plus load-time facts protocol V2/V1 decoding and encoding
    app       routing and handlers           http     HTTP/1.1 on uvloop + httptools
    metrics   Prometheus metrics             drift    PSI against the training baseline
    runtime   processes, signals, draining
"""

from __future__ import annotations

import logging
import sys

from modelyard.reasons import Reason
from modelyard.storage.uri import InvalidUri
from modelyard.workloads.common import termination
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError
from modelyard.workloads.serving.config import UsageError, parse


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        config = parse(argv)
    except (UsageError, InvalidUri) as error:
        return termination.fail(WorkloadError(Reason.InvalidArguments, str(error), EXIT_USAGE))
    # Imported here so `--help` and usage errors answer without loading uvloop and numpy.
    from modelyard.workloads.serving.runtime import run

    return run(config)
