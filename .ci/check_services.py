"""Fail loudly when CI's PostgreSQL or Redis is missing: `.ci/run` must never pass by skipping them."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis


def main(database_url: str, redis_url: str) -> int:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as error:
        print(f"FAIL: PostgreSQL at {database_url} is not reachable: {error}", file=sys.stderr)
        return 1
    print(f"PostgreSQL {version[0] if version else '?'} at {parts.hostname}:{parts.port}, database {name!r}")
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
        client.ping()
        info = client.info("server")
    except redis.RedisError as error:
        print(f"FAIL: Redis at {redis_url} is not reachable: {error}", file=sys.stderr)
        return 1
    print(f"Redis {info.get('redis_version', '?')} at {redis_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
