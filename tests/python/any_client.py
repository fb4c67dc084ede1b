"""hyperd from the current grpcio with a channel's default options, and no generated code for
hyperd's API: every message type comes from server reflection.

Usage: any_client.py SOCKET ARCHIVE SAVED
Loads ARCHIVE, lists, removes an image that does not exist, and saves py:1 (OCI) to SAVED.
"""
import sys

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

socket, archive, saved = sys.argv[1:4]
# grpcio sends the socket path as :authority here, unless told otherwise: the case at issue.
channel = grpc.insecure_channel("unix:" + socket)

health = health_pb2_grpc.HealthStub(channel)
for service in ["", "hyperd.v1.ImageService"]:
    status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
    print("health", repr(service), health_pb2.HealthCheckResponse.ServingStatus.Name(status))

reflection = ProtoReflectionDescriptorDatabase(channel)
print("services", " ".join(sorted(reflection.get_services())))
pool = DescriptorPool(reflection)
images = pool.FindServiceByName("hyperd.v1.ImageService")


def rpc(name):
    """The request class and a callable for a method, from its descriptor alone."""
    m = images.methods_by_name[name]
    request = message_factory.GetMessageClass(m.input_type)
    response = message_factory.GetMessageClass(m.output_type)
    kind = {
        (False, False): channel.unary_unary,
        (True, False): channel.stream_unary,
        (False, True): channel.unary_stream,
    }[(m.client_streaming, m.server_streaming)]
    path = f"/{images.full_name}/{name}"
    return request, kind(
        path, request_serializer=request.SerializeToString, response_deserializer=response.FromString
    )


LoadRequest, load = rpc("Load")


def chunks():
    first = LoadRequest()
    first.options.SetInParent()
    yield first
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            yield LoadRequest(chunk=chunk)


for image in load(chunks()).images:
    print("loaded", " ".join(image.names), image.id)

ListRequest, list_images = rpc("List")
for image in list_images(ListRequest()).images:
    print("listed", image.repository, image.tag, image.id)

RemoveRequest, remove = rpc("Remove")
try:
    remove(RemoveRequest(image="no-such-image:1"))
    print("removed a missing image")
except grpc.RpcError as e:
    print("remove", e.code().name, e.details())

SaveRequest, save = rpc("Save")
request = SaveRequest()
request.images.add(image="py:1")
request.format = pool.FindEnumTypeByName("hyperd.v1.ArchiveFormat").values_by_name[
    "ARCHIVE_FORMAT_OCI"
].number
size = 0
with open(saved, "wb") as f:
    for part in save(request):
        size += f.write(part.chunk)
print("saved", size > 0)
