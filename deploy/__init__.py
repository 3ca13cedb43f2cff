"""How Brook is deployed: the production stack on one machine (docs/operations.md)."""
