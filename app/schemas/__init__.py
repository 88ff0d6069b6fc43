"""Pydantic wire models: what clients send and receive."""
