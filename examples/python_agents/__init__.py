"""Python agents for Brook: an HTTP agent (``http_agent``) and a blocking in-process agent (``legacy_agent``)."""
