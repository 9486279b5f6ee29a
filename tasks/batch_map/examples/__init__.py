"""Example map functions shipped with colabflow: the only code the pool runs unless its allowlist says more."""
