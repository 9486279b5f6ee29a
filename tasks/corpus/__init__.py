"""The corpus-analysis job kind: a multilingual corpus's languages, tokens and statistics."""
