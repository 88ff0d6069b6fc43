"""Use cases: each owns its transaction and speaks in wire models and domain errors."""
