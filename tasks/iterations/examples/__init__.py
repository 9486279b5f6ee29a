"""Example iterative programs shipped with colabflow: a hill climb and a small torch training."""
