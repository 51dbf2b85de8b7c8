"""Pre-framed WebSocket messages written straight to a connection's transport.

A live entry goes to thousands of subscribers as the same bytes (the same rendered JSON, the
same operation id for most of them). Through ASGI each of those messages costs a coroutine
call chain, a `Frame` object and its serialisation in `websockets`, for every subscriber.
Here the frame is built once and each subscriber's share is one `transport.write`.

This is only done where it is known to be exact: a connection served by uvicorn's sans-I/O
`websockets` protocol (what `opsgraph serve` runs) with no extension negotiated, so that a
server frame is the plain RFC 6455 header and the payload. Anywhere else `frame_writer`
answers None and messages go through the ASGI `send` as usual.
"""

from __future__ import annotations

import struct
from typing import Protocol

from websockets.protocol import State

try:  # the protocol class is uvicorn's; an older or different server simply has none
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

_TEXT_FIN = 0x81  # FIN set, opcode 1 (text); a server's frames are never masked


def text_frame(data: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying `data` (already UTF-8)."""
    size = len(data)
    if size < 126:
        return bytes((_TEXT_FIN, size)) + data
    if size < 1 << 16:
        return struct.pack("!BBH", _TEXT_FIN, 126, size) + data
    return struct.pack("!BBQ", _TEXT_FIN, 127, size) + data


class FrameWriter(Protocol):
    def write(self, frames: bytes) -> bool:
        """Write whole frames (one or more, back to back) now, or answer False without
        writing if this connection cannot take them now: closing, closed, or its write
        buffer over the high-water mark. The caller then sends the messages the usual way,
        which waits or fails as ASGI does."""


class TransportWriter:
    """A `FrameWriter` for one connection of uvicorn's sans-I/O WebSocket protocol.

    Whole frames written between the protocol's own writes (pings, pongs, the close) keep
    the stream valid: everything runs on one event loop and each write is whole frames.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def write(self, frames: bytes) -> bool:
        protocol = self._protocol
        transport = protocol.transport
        # Every way the connection ends sets `close_sent` (our close frame is out) or
        # closes the transport (the peer's close, a lost connection, a protocol error).
        if (
            protocol.close_sent
            or transport.is_closing()
            or not protocol.writable.is_set()  # paused: the usual send waits for the drain
        ):
            return False
        transport.write(frames)
        return True


def frame_writer(send: object) -> FrameWriter | None:
    """A writer for the connection behind this ASGI `send`, as the server handed it to the
    app, or None where frames cannot be written directly (see the module's docstring)."""
    protocol = getattr(send, "__self__", None)
    if (
        WebSocketsSansIOProtocol is None
        or type(protocol) is not WebSocketsSansIOProtocol
        or getattr(send, "__func__", None) is not WebSocketsSansIOProtocol.send
        or protocol.conn.extensions  # e.g. permessage-deflate: frames are not plain
        or protocol.conn.state is not State.OPEN
    ):
        return None
    return TransportWriter(protocol)
