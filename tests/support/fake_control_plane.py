"""A fake of Modal's control plane, enough for ``modal deploy`` to run offline.

Built on the servicer base class that ships in the ``modal_proto`` wheel (the same gRPC
service Modal's client talks to): every RPC records its request and answers with an empty
reply, with ids filled in (``ap-``, ``fu-``, ``im-``, ...), images built at once, every
file already uploaded, and what the client checks on a created function (its name, a
definition id, a web URL for web functions) echoed back. Nothing is built or run: a test
reads the recorded requests to see what a deploy would have asked Modal for.

    plane = FakeControlPlane()
    server = grpclib.server.Server([plane])
    await server.start("127.0.0.1", 0)        # MODAL_SERVER_URL=http://127.0.0.1:<port>
    ... deploy ...
    plane.requests("FunctionCreate")
"""

from __future__ import annotations

import itertools
from typing import Any

import grpclib.const
from modal_proto import api_grpc, api_pb2

ID_PREFIXES = {
    "app_id": "ap",
    "environment_id": "en",
    "dict_id": "di",
    "function_id": "fu",
    "image_id": "im",
    "mount_id": "mo",
    "secret_id": "st",
    "queue_id": "qu",
    "volume_id": "vo",
}
IMAGE_BUILDER_VERSION = "2025.06"  # one this modal client supports


class _Stub(api_grpc.ModalClientBase):
    """Only to read the service's method table (the base class is abstract)."""


for _name in api_grpc.ModalClientBase.__abstractmethods__:
    setattr(_Stub, _name, None)
_Stub.__abstractmethods__ = frozenset()
_METHODS = {path.rsplit("/", 1)[1]: handler for path, handler in _Stub().__mapping__().items()}


class FakeControlPlane:
    """Records every request; see the module docstring for what it answers. A grpclib
    servable: it maps every method of Modal's service (``__mapping__``) to one answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._ids = itertools.count(1)

    def requests(self, method: str) -> list[Any]:
        return [request for name, request in self.calls if name == method]

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = {}
        for name, handler in _METHODS.items():
            mapping[f"/modal.client.ModalClient/{name}"] = grpclib.const.Handler(
                self._answer(name, handler.reply_type),
                handler.cardinality,
                handler.request_type,
                handler.reply_type,
            )
        return mapping

    def _answer(self, name: str, reply_type: type) -> Any:
        async def answer(stream: Any) -> None:
            request = await stream.recv_message()
            self.calls.append((name, request))
            await stream.send_message(self._reply(name, reply_type(), request))

        return answer

    def _reply(self, name: str, reply: Any, request: Any) -> Any:
        for field in reply.DESCRIPTOR.fields:
            if field.name in ID_PREFIXES and field.type == field.TYPE_STRING:
                setattr(reply, field.name, f"{ID_PREFIXES[field.name]}-{next(self._ids):06d}")
        if name == "EnvironmentGetOrCreate":
            reply.metadata.name = "main"
            reply.metadata.settings.image_builder_version = IMAGE_BUILDER_VERSION
        elif name in ("ImageGetOrCreate", "ImageJoinStreaming"):
            reply.result.status = api_pb2.GenericResult.GENERIC_STATUS_SUCCESS
            if name == "ImageJoinStreaming":
                reply.eof = True
        elif name == "MountPutFile":
            reply.exists = True
        elif name == "FunctionCreate":
            self._created(reply, request)
        return reply

    def _created(self, reply: Any, request: Any) -> None:
        """What the client reads back of a function it created."""
        if request.existing_function_id:
            reply.function_id = request.existing_function_id
        data = request.function_data if request.HasField("function_data") else request.function
        reply.function_data.CopyFrom(request.function_data)
        ranked = reply.function_data.ranked_functions.add()
        if request.HasField("function"):
            ranked.function.CopyFrom(request.function)
        reply.handle_metadata.function_name = data.function_name
        reply.handle_metadata.definition_id = f"de-{next(self._ids):06d}"
        if data.webhook_config.type:
            reply.handle_metadata.web_url = f"https://test--{data.function_name}.modal.run"
