"""Running a reply: sending a message, the runner and its recorder, the sweeper (docs/delivery.md, "Running a
message")."""
