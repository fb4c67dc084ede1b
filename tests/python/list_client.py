"""The listing from a hyperd client generated in Python, on a channel with grpcio's default
options (4 MiB largest message received).

Usage: list_client.py SOCKET GENERATED_DIR
Prints, for List without page_size, either `whole ROWS` or `too-large CODE REASON TOKEN?` (whether
the ErrorInfo carries a next_page_token), then `NAME LISTED PAGES ROWS SHA256` for ListStream,
List page by page (page_size 700) and List from the error's token on (first page too), where
SHA256 is of the rows' `repository:tag` lines in the order they came.
"""
import hashlib
import sys

sys.path.insert(0, sys.argv[2])

import grpc  # noqa: E402
from hyperd.v1 import images_pb2, images_pb2_grpc  # noqa: E402
import rpc_status_pb2  # noqa: E402


def error_info(error):
    """The ErrorInfo in a failed call's status details."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in rpc_status_pb2.Status.FromString(value).details:
                if detail.type_url.endswith("/google.rpc.ErrorInfo"):
                    return rpc_status_pb2.ErrorInfo.FromString(detail.value)
    return None


def summary(name, pages):
    count, rows, digest = 0, 0, hashlib.sha256()
    for page in pages:
        count += 1
        for image in page.images:
            rows += 1
            digest.update(f"{image.repository}:{image.tag}\n".encode())
    print(name, count, rows, digest.hexdigest())


def paged(stub, size, token=""):
    while True:
        page = stub.List(images_pb2.ListRequest(page_size=size, page_token=token))
        yield page
        token = page.next_page_token
        if not token:
            return


channel = grpc.insecure_channel(f"unix://{sys.argv[1]}")
stub = images_pb2_grpc.ImageServiceStub(channel)
token = None
try:
    whole = stub.List(images_pb2.ListRequest())
    print("whole", len(whole.images))
except grpc.RpcError as e:
    info = error_info(e)
    token = info.metadata.get("next_page_token", "")
    print("too-large", e.code().name, info.reason, "token" if token else "no-token")
summary("stream", stub.ListStream(images_pb2.ListRequest()))
summary("paged", paged(stub, 700))
if token is not None:
    first = stub.List(images_pb2.ListRequest(page_size=1000))
    summary("resumed", [first, *paged(stub, 1000, token)])
