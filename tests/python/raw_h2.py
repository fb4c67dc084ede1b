"""Raw HTTP/2 at hyperd with a socket path as :authority, in every encoding HPACK and HTTP/2
allow, so the test does not depend on what one gRPC library's encoder happens to send.

Usage: raw_h2.py SOCKET
Sends one unary grpc.health.v1.Health/Check per case on one connection (so the HPACK dynamic
table carries over) and prints each case's answer.
"""
import socket
import sys

from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

path = sys.argv[1]
sock = socket.socket(socket.AF_UNIX)
sock.connect(path)
sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
encoder, decoder = Encoder(), Decoder()
# An empty HealthCheckRequest as one gRPC message: not compressed, length 0.
EMPTY = b"\x00\x00\x00\x00\x00"
# HealthCheckResponse{status: SERVING}.
SERVING = b"\x00\x00\x00\x00\x02\x08\x01"


def headers(authority, never_indexed=False):
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "raw-h2-test"),
    ]
    if never_indexed:
        return [NeverIndexedHeaderTuple(n, v) for n, v in fields]
    return fields


def frames(stream, block, split=1, padded=False, priority=False):
    """HEADERS (optionally PADDED and PRIORITY) and CONTINUATION frames carrying `block`."""
    size = -(-len(block) // split)
    parts = [block[i : i + size] for i in range(0, len(block), size)]
    first = HeadersFrame(stream, parts[0])
    if len(parts) == 1:
        first.flags.add("END_HEADERS")
    if padded:
        first.flags.add("PADDED")
        first.pad_length = 7
    if priority:
        first.flags.add("PRIORITY")
        first.depends_on, first.stream_weight, first.exclusive = 0, 200, False
    out = [first]
    for i, part in enumerate(parts[1:], 2):
        c = ContinuationFrame(stream, part)
        if i == len(parts):
            c.flags.add("END_HEADERS")
        out.append(c)
    data = DataFrame(stream, EMPTY)
    data.flags.add("END_STREAM")
    return b"".join(f.serialize() for f in out + [data])


def read_exact(n):
    buf = b""
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise SystemExit(f"connection closed by hyperd after {len(buf)} of {n} bytes")
        buf += got
    return buf


def answer(stream):
    """Reads frames until `stream` ends; returns (:status, grpc-status, body)."""
    fields, body = {}, b""
    while True:
        frame, length = Frame.parse_frame_header(memoryview(read_exact(9)))
        frame.parse_body(memoryview(read_exact(length)))
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            sock.sendall(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
        elif isinstance(frame, (RstStreamFrame, GoAwayFrame)):
            raise SystemExit(f"stream {stream}: {frame!r}")
        elif isinstance(frame, HeadersFrame):
            # Every block the server sends goes through the one decoder, in order.
            fields.update(decoder.decode(frame.data, raw=False))
        elif isinstance(frame, DataFrame) and frame.data:
            body += frame.data
            grant = WindowUpdateFrame(0, window_increment=len(frame.data)).serialize()
            sock.sendall(grant + WindowUpdateFrame(stream, window_increment=len(frame.data)).serialize())
        if frame.stream_id == stream and "END_STREAM" in frame.flags:
            return fields.get(":status"), fields.get("grpc-status"), body


# Dynamic table size updates come first in the next block the encoder writes.
def shrink():
    encoder.header_table_size = 256


escaped = path.replace("/", "%2F")
cases = [
    ("huffman, indexed into the table", dict(authority=path, huffman=True)),
    ("plain, all from the table", dict(authority=path, huffman=False)),
    ("huffman, never indexed", dict(authority=path, huffman=True, never_indexed=True)),
    ("plain, never indexed", dict(authority=path, huffman=False, never_indexed=True)),
    ("split over 3 CONTINUATION frames", dict(authority=path, huffman=True, split=4)),
    ("PADDED and PRIORITY", dict(authority=path, huffman=False, padded=True, priority=True)),
    ("all of them, percent-encoded path", dict(authority=escaped, split=3, padded=True, priority=True)),
    ("table size update, then localhost", dict(authority="localhost", before=shrink)),
    ("the socket path once more", dict(authority=path, huffman=True)),
]
for i, (name, case) in enumerate(cases):
    stream = 2 * i + 1
    if "before" in case:
        case.pop("before")()
    block = encoder.encode(
        headers(case.pop("authority"), case.pop("never_indexed", False)),
        huffman=case.pop("huffman", True),
    )
    sock.sendall(frames(stream, block, **case))
    status, grpc_status, body = answer(stream)
    answer_body = "SERVING" if body == SERVING else repr(body)
    print(f"{name}: {status} grpc-status {grpc_status} {answer_body}")
