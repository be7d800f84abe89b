"""The few MQTT 3.1.1 packets a simulated outlet needs, encoded and parsed by hand.

bench/_fleet_sim.py drives tens of thousands of connections from a few processes; a
full client object per connection (paho) costs more CPU and memory per outlet than
the outlets' own traffic, and its connect blocks. What is here is only what the
simulator sends (CONNECT, SUBSCRIBE, PUBLISH at QoS 0 and 1, PUBACK, PINGREQ,
DISCONNECT) and reads (CONNACK, SUBACK, PUBLISH, PUBACK, PINGRESP), per the MQTT
3.1.1 specification's fixed and variable headers.
"""

from __future__ import annotations

import struct

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 2, 3, 4, 9, 13
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def _length(n: int) -> bytes:
    """The remaining-length field: 7 bits per byte, high bit = more follows."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def connect(client_id: str, keepalive: int) -> bytes:
    """CONNECT with a clean session, no will, no credentials."""
    body = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _string(client_id)
    return b"\x10" + _length(len(body)) + body


def subscribe(packet_id: int, topic: str, qos: int) -> bytes:
    body = struct.pack("!H", packet_id) + _string(topic) + bytes([qos])
    return b"\x82" + _length(len(body)) + body


def publish(topic: bytes, payload: bytes, *, qos: int = 0, packet_id: int = 0) -> bytes:
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | qos << 1]) + _length(len(body)) + body


def puback(packet_id: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", packet_id)


def split(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """Take the complete packets off the front of ``buf``: (type, flags, body) each."""
    packets: list[tuple[int, int, bytes]] = []
    pos = 0
    while len(buf) - pos >= 2:
        first = buf[pos]
        length, shift, i = 0, 0, pos + 1
        while True:
            if i >= len(buf):
                del buf[:pos]
                return packets
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        if len(buf) - i < length:
            break
        packets.append((first >> 4, first & 0x0F, bytes(buf[i : i + length])))
        pos = i + length
    del buf[:pos]
    return packets


def parse_publish(flags: int, body: bytes) -> tuple[str, int, int, bytes]:
    """(topic, qos, packet id, payload) of a PUBLISH body."""
    (n,) = struct.unpack_from("!H", body)
    topic = body[2 : 2 + n].decode()
    qos = (flags >> 1) & 3
    pos = 2 + n
    packet_id = 0
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, pos)
        pos += 2
    return topic, qos, packet_id, body[pos:]
