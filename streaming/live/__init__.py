"""Live delivery: fan-out through the channel layer and the one reader that follows a log exactly once
(docs/delivery.md, "Exactly once")."""
