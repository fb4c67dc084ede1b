"""A hyperd client in Python, generated from proto/hyperd/v1/images.proto with grpc_tools.

Usage: client.py SOCKET GENERATED_DIR ARCHIVE
Loads ARCHIVE, lists the images, and asks for one that does not exist.
"""
import sys

sys.path.insert(0, sys.argv[2])

import grpc  # noqa: E402
from hyperd.v1 import images_pb2, images_pb2_grpc  # noqa: E402


def chunks(path):
    yield images_pb2.LoadRequest(options=images_pb2.LoadOptions())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield images_pb2.LoadRequest(chunk=chunk)


channel = grpc.insecure_channel(f"unix://{sys.argv[1]}")
images = images_pb2_grpc.ImageServiceStub(channel)
for loaded in images.Load(chunks(sys.argv[3])).images:
    print("loaded", " ".join(loaded.names), loaded.id)
for image in images.List(images_pb2.ListRequest()).images:
    print("listed", image.repository, image.tag, image.id)
try:
    images.Inspect(images_pb2.InspectRequest(image="no-such-image:1"))
except grpc.RpcError as e:
    print("error", e.code().name, e.details())
