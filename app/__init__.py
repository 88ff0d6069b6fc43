"""taskmill: an HTTP task-queue service on PostgreSQL."""

__version__ = "0.1.0"
