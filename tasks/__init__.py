"""colabflow's stages: plain typed functions, each wrapped by a thin Prefect task.

The `colabflow` loggers log at INFO (the codec choice and why, listings, rate-limit waits).
Prefect routes them to the run's logs through `PREFECT_LOGGING_EXTRA_LOGGERS=colabflow`, but
gives them no level, so without this they would inherit the root logger's WARNING.
"""

import logging

logging.getLogger("colabflow").setLevel(logging.INFO)
