"""Brook's foundation, imported by every layer above it and importing none of them (docs/architecture.md, "The stack"):
API errors and codes, log context, the JSON parser, the database thread bridge, rate and stream-slot primitives,
metric counters and shared serializer fields."""
