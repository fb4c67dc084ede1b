"""One uid's side of the quota tests, with stubs generated from proto/hyperd/v1/*.proto.

Usage: quota_user.py SOCKET GENERATED_DIR MODE
  fill:  creates leases until refused, then opens a write (ref "mine", 1 of 2 bytes) and leaves
         it open; prints "leases N CODE REASON" and "open mine OFFSET".
  again: creates one lease; prints "lease ok".
  other: asks Status and Abort of the ref "theirs" (another uid's); prints each call's code.
  write: writes a small blob; prints "written COMMITTED".
"""
import hashlib
import sys

sys.path.insert(0, sys.argv[2])

import grpc  # noqa: E402
from hyperd.v1 import content_pb2, content_pb2_grpc  # noqa: E402


def reason(e):
    """The ErrorInfo reason, found in the status details without decoding them."""
    for key, value in e.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and b"QUOTA_REACHED" in value:
            return "QUOTA_REACHED"
    return "other"


content = content_pb2_grpc.ContentServiceStub(grpc.insecure_channel(f"unix://{sys.argv[1]}"))
mode = sys.argv[3]
if mode == "fill":
    made = 0
    while True:
        try:
            content.CreateLease(content_pb2.CreateLeaseRequest(ttl_seconds=600))
            made += 1
        except grpc.RpcError as e:
            print("leases", made, e.code().name, reason(e))
            break
    blob = b"ab"
    first = content_pb2.WriteRequest(
        ref="mine", expected="sha256:" + hashlib.sha256(blob).hexdigest(), total=2, data=blob[:1]
    )
    print("open mine", content.Write(iter([first])).offset)
elif mode == "again":
    content.CreateLease(content_pb2.CreateLeaseRequest(ttl_seconds=600))
    print("lease ok")
elif mode == "write":
    blob = b"the other uid's blob"
    msg = content_pb2.WriteRequest(
        ref="small", expected="sha256:" + hashlib.sha256(blob).hexdigest(), total=len(blob), data=blob
    )
    print("written", content.Write(iter([msg])).committed)
elif mode == "other":
    for name, call, req in [
        ("status", content.Status, content_pb2.StatusRequest(ref="theirs")),
        ("abort", content.Abort, content_pb2.AbortRequest(ref="theirs")),
    ]:
        try:
            call(req)
            print(name, "OK")
        except grpc.RpcError as e:
            print(name, e.code().name)
