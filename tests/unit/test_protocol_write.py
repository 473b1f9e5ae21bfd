"""A connection's output path (hamq.protocol): one connection's encoding error never touches another."""

from __future__ import annotations

import asyncio

from hamq.core.engine import Output
from hamq.protocol import StompProtocol
from hamq.stomp.codec import Frame


class Transport:
    def __init__(self):
        self.data = b""
        self.eof = False

    def write(self, data):
        self.data += data

    def can_write_eof(self):
        return True

    def write_eof(self):
        self.eof = True

    def resume_reading(self):
        pass

    def close(self):
        pass


class Term:
    def __init__(self):
        self.protocols = {}
        self.gone = []

    def connection_gone(self, conn_id):
        self.gone.append(conn_id)


class Connector:
    max_frame_size, max_headers, max_header_length = 1 << 20, 100, 1 << 16


class Unencodable(Frame):
    def __init__(self):
        super().__init__("MESSAGE", [("x", object())], b"")  # not a str: encode_frame cannot format it

    @property
    def headers(self):
        raise RuntimeError("test: cannot encode")

    @headers.setter
    def headers(self, value):
        pass


def test_an_output_that_cannot_be_encoded_closes_only_its_own_connection():
    async def main():
        term = Term()
        bad, good = StompProtocol(term, Connector()), StompProtocol(term, Connector())
        for proto in (bad, good):
            proto.transport = Transport()
            term.protocols[proto.conn_id] = proto
        bad.write([Output(bad.conn_id, Frame("RECEIPT", [("receipt-id", "1")])), Output(bad.conn_id, Unencodable())])
        good.write([Output(good.conn_id, Frame("RECEIPT", [("receipt-id", "2")]))])
        assert bad.closed and bad.transport.eof and term.gone == [bad.conn_id]
        assert bad.transport.data.startswith(b"RECEIPT\nreceipt-id:1")  # what was encoded before still goes out
        assert not good.closed and good.transport.data.startswith(b"RECEIPT\nreceipt-id:2")

    asyncio.run(main())
