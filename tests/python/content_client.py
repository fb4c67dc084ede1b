"""The content API from Python with stubs generated from proto/hyperd/v1/*.proto by grpc_tools.

Usage: content_client.py SOCKET GENERATED_DIR
Writes a blob through Write, reads it back from an offset with Read, then writes an image's
config, layer and manifest and creates the image from them with CreateImage; List shows it.
"""
import hashlib
import io
import json
import sys
import tarfile

sys.path.insert(0, sys.argv[2])

import grpc  # noqa: E402
from hyperd.v1 import content_pb2, content_pb2_grpc, images_pb2, images_pb2_grpc  # noqa: E402

CHUNK = 1 << 20


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write(content, ref, data, lease):
    def messages():
        yield content_pb2.WriteRequest(
            ref=ref, expected=digest(data), total=len(data), lease=lease, data=data[:CHUNK]
        )
        for at in range(CHUNK, len(data), CHUNK):
            yield content_pb2.WriteRequest(data=data[at : at + CHUNK])

    return content.Write(messages())


channel = grpc.insecure_channel(f"unix://{sys.argv[1]}")
content = content_pb2_grpc.ContentServiceStub(channel)
images = images_pb2_grpc.ImageServiceStub(channel)
lease = content.CreateLease(content_pb2.CreateLeaseRequest(ttl_seconds=600)).id

blob = hashlib.sha256(b"seed").digest() * (3 * CHUNK // 32 + 7)
written = write(content, "py-blob", blob, lease)
print("written", written.committed, written.offset == len(blob))
request = content_pb2.ReadRequest(digest=digest(blob), offset=CHUNK + 5, length=CHUNK)
read = b"".join(r.data for r in content.Read(request))
print("read", read == blob[CHUNK + 5 : 2 * CHUNK + 5])

layer_buf = io.BytesIO()
with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    body = b"hello from python\n"
    info = tarfile.TarInfo("hello.txt")
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))
layer = layer_buf.getvalue()
config = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
    }
).encode()
manifest = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest(layer),
                "size": len(layer),
            }
        ],
    }
).encode()
for name, data in [("config", config), ("layer", layer), ("manifest", manifest)]:
    print("wrote", name, write(content, "py-" + name, data, lease).committed)
created = images.CreateImage(
    images_pb2.CreateImageRequest(digest=digest(manifest), names=["py-content:1"])
).image
print("created", " ".join(created.names), created.id == digest(config))
for image in images.List(images_pb2.ListRequest()).images:
    print("listed", image.repository, image.tag, image.id == digest(config))
try:
    content.Read(content_pb2.ReadRequest(digest=digest(b"nothing"))).next()
except grpc.RpcError as e:
    print("error", e.code().name)
