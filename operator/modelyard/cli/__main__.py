"""`python -m modelyard.cli`, for environments without the console scripts."""

import sys

from modelyard.cli.main import main

sys.exit(main())
