"""HTTP layer: thin routes, one use-case call each, and problem+json rendering."""
