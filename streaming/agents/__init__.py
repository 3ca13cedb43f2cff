"""Agents: what answers a visitor's message (docs/architecture.md, "Agents").

``base`` is the interface (``Agent``, the ``Emitter`` an agent reports its steps to, ``Turn``, ``Usage``);
``registry`` picks a tenant's agent; ``demo`` and ``llm`` are Brook's own, ``providers`` the model SDKs the LLM agent
speaks through, ``tools`` and ``reasoning`` what it uses. Nothing here touches the database or HTTP.
"""
