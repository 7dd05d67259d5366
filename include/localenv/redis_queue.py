"""Redis for the local environment's production shape (CeleryExecutor): is it there, and tidying up."""

from __future__ import annotations

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_is_reachable(url: str = DEFAULT_REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def forget_celery_queue(url: str, queue: str) -> None:
    """Remove an environment's Celery queue and its bindings from Redis, which would otherwise keep them."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    for key in client.scan_iter(match=f"*{queue}*", count=1000):
        client.delete(key)


def production_services_missing(redis_url: str = DEFAULT_REDIS_URL) -> str | None:
    """Why the production shape cannot run here (PostgreSQL or Redis not answering on loopback), or None."""
    from include.localenv import postgres

    if not postgres.server_is_reachable(postgres.DEFAULT_SERVER_URL):
        return f"PostgreSQL does not answer at {postgres.DEFAULT_SERVER_URL}"
    if not redis_is_reachable(redis_url):
        return f"Redis does not answer at {redis_url}"
    return None
