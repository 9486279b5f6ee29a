"""Work-pool setup and the worker bootstrap: what turns any machine into a colabflow worker."""
