"""Runnable examples of a tenant's own agents for Brook (docs/agents.md); the test suite runs each."""
