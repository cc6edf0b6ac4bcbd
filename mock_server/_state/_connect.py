"""``--state`` URLs: checking them, showing them without a password, and reaching Redis."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..exceptions import ConfigError

SCHEMES = ("redis", "rediss", "unix")


def check_url(url: str, flag: str = "--state") -> str:
    """``url`` if it names a Redis server redis-py can reach; ConfigError naming ``flag`` if not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{flag}: not a URL ({exc}); expected redis://HOST:PORT/DB") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"{flag}: {shown(url)!r} is not a Redis URL; expected redis://HOST:PORT/DB,"
            " rediss://HOST:PORT/DB or unix:///PATH/TO/SOCKET"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{flag}: {shown(url)!r} names no socket path; expected unix:///PATH")
    elif not parts.hostname:
        raise ConfigError(f"{flag}: {shown(url)!r} names no host; expected redis://HOST:PORT/DB")
    elif port == 0:
        raise ConfigError(f"{flag}: {shown(url)!r}: port 0 is no server's port")
    db = parts.path.lstrip("/") if parts.scheme != "unix" else ""
    if db and not db.isdigit():
        raise ConfigError(f"{flag}: {shown(url)!r}: the database must be a number, got {db[:20]!r}")
    return url


def shown(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Raise ConfigError naming the URL unless a Redis server answers PING there."""
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise ConfigError(f"--state {shown(url)}: cannot reach Redis there: {exc}") from None
    finally:
        client.close()
