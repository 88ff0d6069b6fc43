"""All SQL lives here: table definitions, queries, and driver-error translation."""
