"""A lean `graphql-transport-ws` subscriber for the fan-out benchmark: a few microseconds of
client CPU per message, so that thousands of subscribers on this machine measure the server
rather than the load generator.

It speaks just enough WebSocket (RFC 6455) for this: the upgrade, masked client frames, and
unmasked server frames (text, ping, close). Each `next` message whose summary reads
`fanout <posted at>` becomes one latency sample, taken when its bytes arrived.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time

MARK = b'"summary":"fanout '


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (clients must mask, RFC 6455 section 5.3)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big") if length else b""
    return header + mask + masked


class Subscriber(asyncio.Protocol):
    """One connection, one subscription; appends latencies (seconds) to `latencies`."""

    def __init__(self, *, host: str, path: str, key: str, query: str,
                 latencies: list[float], subscribed: asyncio.Future[bool]) -> None:  # fmt: skip
        self.host, self.path, self.key, self.query = host, path, key, query
        self.latencies = latencies
        self.subscribed = subscribed
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.acknowledged = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        nonce = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_result(False)

    def send(self, message: dict[str, object]) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(json.dumps(message).encode()))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                assert self.transport is not None
                self.transport.close()
                return
            del buffer[: end + 4]
            self.upgraded = True
            init = {"Authorization": f"Bearer {self.key}"}
            self.send({"type": "connection_init", "payload": init})
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,), start = struct.unpack_from("!H", buffer, 2), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,), start = struct.unpack_from("!Q", buffer, 2), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x1:
                self.on_text(payload, now)
            elif opcode == 0x9:  # ping: answer pong with the same payload
                assert self.transport is not None
                self.transport.write(client_frame(payload, opcode=0xA))
            elif opcode == 0x8:
                assert self.transport is not None
                self.transport.close()
                return

    def on_text(self, payload: bytes, now: float) -> None:
        at = payload.find(MARK)
        if at >= 0:
            start = at + len(MARK)
            self.latencies.append(now - float(payload[start : payload.index(b'"', start)]))
        elif not self.acknowledged and b"connection_ack" in payload:
            self.acknowledged = True
            self.send({"id": "1", "type": "subscribe", "payload": {"query": self.query}})
            if not self.subscribed.done():
                self.subscribed.set_result(True)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(b"", opcode=0x8))
            self.transport.close()
