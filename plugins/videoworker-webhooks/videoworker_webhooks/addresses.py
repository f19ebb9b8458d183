"""Which IP addresses a request-supplied URL may reach: public unicast ones, and nothing else.

Checked for every address a request URL's host resolves to, and for hosts written as
literal IPs (in any of the numeric forms ``getaddrinfo`` accepts, such as ``2130706433``
or ``0x7f.1``). IPv6 forms that carry an IPv4 address (mapped, compatible, translated,
NAT64, 6to4, Teredo) are judged by the address they carry too.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address

# instance-metadata and host-agent services; most are also link-local or private, some are not (Azure's)
METADATA = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wireserver: a public address reachable from inside Azure only
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::253",  # AWS DNS over IPv6
    )
)
CGNAT = IPv4Network("100.64.0.0/10")
NAT64 = IPv6Network("64:ff9b::/96")
TRANSLATED = IPv6Network("::ffff:0:0:0/96")
COMPATIBLE = IPv6Network("::/96")


def parse_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, or None for a name.

    Also reads the legacy IPv4 forms (``127.1``, ``0x7f000001``, ``017700000001``) that the
    system resolver would turn into an address without asking DNS.
    """
    bare = host.strip("[]").rstrip(".")
    try:
        return ip_address(bare)
    except ValueError:
        pass
    if bare and all(c in "0123456789abcdefxABCDEFX." for c in bare):
        try:
            return IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def refusal(address: str | IPAddress) -> str | None:
    """Why a request URL may not connect to ``address`` (e.g. ``"a loopback address"``), or None when it may."""
    if isinstance(address, str):
        try:
            address = ip_address(address)
        except ValueError:
            return "not an IP address"
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, IPv6Address):
        carried = _carried_ipv4(address)
        if carried is not None:
            reason = refusal(carried)
            if reason is not None:
                return f"{reason} ({carried}, carried in IPv6 {address})"
            if address in NAT64 or address.ipv4_mapped or address in TRANSLATED or address in COMPATIBLE:
                return None  # the packet goes to the carried, public IPv4 address
    return _own_refusal(address)


def _own_refusal(address: IPAddress) -> str | None:
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (isinstance(address, IPv4Address) and address in CGNAT, "a shared (CGNAT, 100.64.0.0/10) address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, IPv6Address) and address.is_site_local, "a site-local address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a globally routable address"),
    ]
    return next((reason for matched, reason in checks if matched), None)


def _carried_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 form carries (and an IPv6 socket would reach), or None."""
    low32 = IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in TRANSLATED or address in NAT64:
        return low32
    if address in COMPATIBLE and int(address) > 1:  # :: and ::1 are themselves, not IPv4-compatible
        return low32
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None
