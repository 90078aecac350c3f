"""`python -m proxyscale.job RUN_DIR RANK THREADS RESUME`: a rank > 0 of a multi-process cell, started by its rank 0 (job.ranks)."""

import sys

from proxyscale.job.run import rank_main

sys.exit(rank_main(sys.argv[1:]))
