"""One client connection's asyncio glue: bytes -> FrameDecoder -> engine; released outputs -> transport.

A connection belongs to one master term (``hamq.term.MasterTerm``) and dies
with it. It reads only while the term's lease is serving (see
``MasterTerm.serving``): bytes that arrive meanwhile stay undecoded in the
decoder, and reading resumes once the lock is confirmed again. What it writes
comes only from the term's durability tracker, which releases nothing that is
not durable and nothing while the lease is in doubt.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from typing import TYPE_CHECKING, Iterable, Optional

from hamq.core.messages import MessageFrame
from hamq.stomp.codec import FrameDecoder, ProtocolError, encode_frame

if TYPE_CHECKING:  # pragma: no cover
    from hamq.term import MasterTerm

log = logging.getLogger("hamq.server")

#: Slow-reader protection: stop dispatching to (and reading from) a client
#: whose unsent output passes HIGH; resume below LOW.
WRITE_HIGH_WATER = 1024 * 1024
WRITE_LOW_WATER = 256 * 1024
#: File descriptors a master keeps free of client connections: the journal, the epoch file, the lock
#: probe and checkpoints must always be able to open a file.
DESCRIPTOR_RESERVE = 64
#: How long a connection we close keeps draining the peer's input (see StompProtocol.linger).
LINGER_S = 2.0

_conn_ids = itertools.count(1)


class StompProtocol(asyncio.Protocol):
    """One client connection of one master term."""

    def __init__(self, term: "MasterTerm", connector):
        self.term = term
        self.connector = connector
        self.conn_id = next(_conn_ids)
        self.transport: Optional[asyncio.Transport] = None
        self.decoder = FrameDecoder(
            "1.0", connector.max_frame_size, connector.max_headers, connector.max_header_length
        )
        self.closed = False
        #: Reading stops while the client's output backs up (write), its SEND waits for room (flow),
        #: or the term's lease is in doubt (gate).
        self.write_paused = False
        self.flow_paused = False
        self.gate_paused = False

    # -- asyncio callbacks --------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        term = self.term
        peer = transport.get_extra_info("peername")
        limit = getattr(self.connector, "max_connections", None)
        refuse = None
        if limit is not None and term.connection_count(self.connector) >= limit:
            refuse = "maximumConnections=%d reached on connector %s" % (limit, self.connector.name)
        elif len(term.protocols) >= term.descriptor_budget():
            refuse = ("the process is %d file descriptors from its limit (RLIMIT_NOFILE); the rest is kept for "
                      "the store and the lock. Fix: raise LimitNOFILE, or set maximumConnections"
                      % DESCRIPTOR_RESERVE)
        if term.over or refuse:
            if refuse:
                term.complain("refusing %s: %s" % (peer, refuse))
            self.closed = True
            transport.abort()
            return
        high = getattr(self.connector, "max_pending_bytes", None) or WRITE_HIGH_WATER
        transport.set_write_buffer_limits(high=high, low=min(WRITE_LOW_WATER, high // 4))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        term.protocols[self.conn_id] = self
        term.guard(term.broker.connection_made, self.conn_id, peer)
        if not term.serving():
            self._pause_for_gate()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        term = self.term
        decoder = self.decoder
        decoder.feed(data)
        if self.flow_paused or self.gate_paused:
            return  # bytes already in flight when reading stopped: decoded on resume
        if not term.serving():
            self._pause_for_gate()
            return
        broker = term.broker
        broker.touch(self.conn_id)
        try:
            while True:
                try:
                    event = decoder.next_event()
                except ProtocolError as exc:
                    broker.protocol_error(self.conn_id, exc)
                    if exc.fatal:
                        break
                    continue
                if event is None:
                    break
                broker.receive(self.conn_id, event)
                decoder.version = broker.version_of(self.conn_id)
                if broker.is_blocked(self.conn_id):
                    # Producer flow control: the rest stays undecoded, the socket unread.
                    self.flow_paused = True
                    self.transport.pause_reading()
                    break
        except Exception as exc:  # a store failure ends the master term
            term.fail(exc)
            return
        term.flush()

    def connection_lost(self, exc) -> None:
        self.closed = True
        term = self.term
        if term.protocols.pop(self.conn_id, None) is not None:
            term.connection_gone(self.conn_id)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.term.guard(self.term.broker.set_writable, self.conn_id, False)
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.term.guard(self.term.broker.set_writable, self.conn_id, True)
        self._resume_reading()
        self.term.flush()

    # -- reading again ---------------------------------------------------------------
    def _pause_for_gate(self) -> None:
        self.gate_paused = True
        self.term.gated.add(self)
        if self.transport is not None:
            self.transport.pause_reading()

    def gate_resume(self) -> None:
        """The lease is confirmed again: read on, starting with the bytes already buffered."""
        self.gate_paused = False
        self._resume_reading()

    def flow_resume(self) -> None:
        """The held SEND went through: read again, starting with the bytes already buffered."""
        self.flow_paused = False
        self._resume_reading()

    def _resume_reading(self) -> None:
        if self.closed or self.transport is None or self.flow_paused or self.gate_paused:
            return
        if not self.write_paused:
            self.transport.resume_reading()
        asyncio.get_running_loop().call_soon(self.data_received, b"")

    # -- output -----------------------------------------------------------------------
    def write(self, outputs: Iterable) -> None:
        """Write outputs the durability tracker released, in order; a close output ends the connection.

        An output that cannot be encoded for this connection's STOMP version ends
        this connection only (with a log line naming why), never another one's.
        """
        chunks = []
        close = False
        cost = 0
        try:
            for out in outputs:
                if out.close:
                    close = True
                    break
                cost += out.cost
                frame = out.frame
                if frame is None:
                    chunks.append(b"\n")
                elif type(frame) is MessageFrame:
                    chunks.append(frame.encode(out.version))
                else:
                    chunks.append(encode_frame(frame, out.version))
        except Exception as exc:
            log.error("closing connection %s: cannot encode a frame for STOMP %s: %s", self.conn_id,
                      getattr(out, "version", "?"), exc)
            close = True
        if self.closed or self.transport is None:
            return
        if chunks:
            self.transport.write(b"".join(chunks))
        if cost:
            self.term.guard(self.term.broker.written, self.conn_id, cost)
        if close:
            self.closed = True
            self.linger()
            term = self.term
            if term.protocols.pop(self.conn_id, None) is not None:
                term.connection_gone(self.conn_id)

    def linger(self) -> None:
        """Close gently: send FIN, keep discarding input for a moment, then close.

        Closing a socket with unread input makes the kernel send RST, and the
        peer may then lose the ERROR frame we just wrote.
        """
        transport = self.transport
        try:
            transport.resume_reading()
        except Exception:
            pass
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
