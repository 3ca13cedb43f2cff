"""How Brook's browser tests and the widget benchmark start Debian's Chromium (no Django here: bench/ imports it)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
# Headless as root on a machine with no outside network: no sandbox, no GPU, and none of Chromium's background
# connections (update checks, sync), which this closed network would refuse again and again.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
