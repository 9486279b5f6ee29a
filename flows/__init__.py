"""colabflow's Prefect flows and the `colabflow` command."""
