"""colabflow's stages: plain typed functions, each wrapped by a thin Prefect task."""
