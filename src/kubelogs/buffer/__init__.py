"""Durable holding places for events: the dead-letter queue."""
