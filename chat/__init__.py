"""Sessions, messages, thought steps and each reply's event log: the models, every write to them (``services``),
reads (``selectors``), who may read what (``access``) and the session routes (docs/architecture.md, docs/events.md)."""
