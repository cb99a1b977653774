"""Client addresses: parsing, IPv4-mapped IPv6, anonymisation.

The address comes from ``request.remote_addr`` only. Behind a reverse proxy,
wrap the app in werkzeug's :class:`~werkzeug.middleware.proxy_fix.ProxyFix`
with the number of proxies you run; a raw ``X-Forwarded-For`` header is never
read here, because any client can send one.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Prefix lengths kept by :func:`anonymize`: the last octet of an IPv4 address
#: and the last 80 bits of an IPv6 address are zeroed.
IPV4_PREFIX = 24
IPV6_PREFIX = 48


def parse_ip(value: str | None) -> IPAddress | None:
    """The address in ``value``, or ``None`` when it is not one.

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) is returned as the IPv4
    address it carries; an IPv6 zone (``fe80::1%eth0``) is dropped.
    """
    if not value or len(value) > 64:
        return None
    value = value.strip().partition("%")[0]
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def truncate(address: IPAddress) -> IPAddress:
    """``address`` with its host part zeroed: IPv4 to /24, IPv6 to /48."""
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return network.network_address


@lru_cache(maxsize=4096)
def normalise(value: str | None, anonymise: bool) -> tuple[str, bool] | None:
    """``(address, public)`` for a raw ``remote_addr``, or ``None`` when it is not an address.

    ``address`` is anonymised (:func:`truncate`) when ``anonymise`` is true;
    ``public`` is false for private, loopback, link-local, reserved and other
    non-global addresses, which no geo database or service knows.
    Cached per process: the same client sends many requests.
    """
    address = parse_ip(value)
    if address is None:
        return None
    public = address.is_global and not address.is_multicast
    if anonymise:
        address = truncate(address)
    return str(address), public


def anonymize(value: str) -> str | None:
    """The anonymised text form of the address ``value``, or ``None`` when it is not one.

    >>> anonymize("175.16.199.23")
    '175.16.199.0'
    >>> anonymize("2001:480:10::1")
    '2001:480:10::'
    """
    result = normalise(value, True)
    return result[0] if result is not None else None
