"""Which client sent a request, and whether it may: `server.allow_ips` / `trusted_proxies`.

Pure. ``X-Forwarded-For`` is believed only from a trusted proxy, and then read
from the right, skipping our own proxies, so a client cannot forge its way in
by prepending addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import SpecError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str], path: str) -> tuple[Network, ...]:
    """CIDRs (or single addresses) from the config; a bad one is a SpecError at its index."""
    out = []
    for i, value in enumerate(values):
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise SpecError(f"{path}[{i}]", f"not an IP address or CIDR: {exc}") from None
    return tuple(out)


def _within(ip: str, networks: Sequence[Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


@dataclass(frozen=True)
class IpPolicy:
    allow: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The address to judge: the peer, or the first untrusted hop of X-Forwarded-For."""
        if peer is None or not forwarded_for or not _within(peer, self.trusted_proxies):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not _within(hop, self.trusted_proxies):
                return hop
        return hops[0] if hops else peer

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` is one of our proxies (whose X-Forwarded-* headers are believed)."""
        return peer is not None and _within(peer, self.trusted_proxies)

    def allows(self, peer: str | None, forwarded_for: str | None) -> bool:
        if not self.allow:
            return True
        ip = self.client_ip(peer, forwarded_for)
        return ip is not None and _within(ip, self.allow)
