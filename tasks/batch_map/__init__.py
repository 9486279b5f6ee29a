"""The batch-map job kind: a user's function over items in batches. Its flow is not wired yet."""
