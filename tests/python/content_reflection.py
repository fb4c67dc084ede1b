"""ContentService from the current grpcio with no generated code: every message type comes from
server reflection.

Usage: content_reflection.py SOCKET DIGEST
Asks Info about DIGEST, then reads it whole and from an offset, printing what came back.
"""
import hashlib
import sys

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

socket, digest = sys.argv[1:3]
channel = grpc.insecure_channel("unix:" + socket)
pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
service = pool.FindServiceByName("hyperd.v1.ContentService")


def rpc(name):
    """The request class and a callable for a method, from its descriptor alone."""
    m = service.methods_by_name[name]
    request = message_factory.GetMessageClass(m.input_type)
    response = message_factory.GetMessageClass(m.output_type)
    kind = channel.unary_stream if m.server_streaming else channel.unary_unary
    path = f"/{service.full_name}/{name}"
    return request, kind(
        path, request_serializer=request.SerializeToString, response_deserializer=response.FromString
    )


InfoRequest, info = rpc("Info")
for blob in info(InfoRequest(digests=[digest])).blobs:
    print("info", blob.digest == digest, blob.stored, blob.size)

ReadRequest, read = rpc("Read")
whole = b"".join(r.data for r in read(ReadRequest(digest=digest)))
print("whole", len(whole), "sha256:" + hashlib.sha256(whole).hexdigest() == digest)
offsets = []
part = b""
for r in read(ReadRequest(digest=digest, offset=1000, length=2 << 20)):
    offsets.append(r.offset)
    part += r.data
print("part", len(part), part == whole[1000 : 1000 + (2 << 20)], offsets)
