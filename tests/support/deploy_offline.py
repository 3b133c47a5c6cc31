"""``modal deploy webhook_app.py`` against :mod:`support.fake_control_plane`, in this process.

    python tests/support/deploy_offline.py    # prints what the deploy asked Modal for (JSON)

Run in a fresh interpreter (the tests start it as a subprocess): Modal's client reads
``MODAL_SERVER_URL`` and the token when ``modal`` is first imported, and the app module
reads its settings from the environment when imported, as under ``modal deploy``.
"""

import asyncio
import json
import os
import sys
from pathlib import Path

import grpclib.server
from google.protobuf.json_format import MessageToDict

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from support.fake_control_plane import FakeControlPlane  # noqa: E402


async def deploy() -> dict:
    plane = FakeControlPlane()
    server = grpclib.server.Server([plane])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    os.environ.update(
        MODAL_SERVER_URL=f"http://127.0.0.1:{port}",
        MODAL_TOKEN_ID="ak-offline",
        MODAL_TOKEN_SECRET="as-offline",
    )
    import modal.runner

    import webhook_app

    try:
        result = await modal.runner.deploy_app.aio(webhook_app.app)
    finally:
        server.close()
    functions = {}
    for request in plane.requests("FunctionCreate"):
        data = request.function_data if request.HasField("function_data") else request.function
        functions[data.function_name] = MessageToDict(data, preserving_proto_field_name=True)
    [publish] = plane.requests("AppPublish")
    return {
        "app_id": result.app_id,
        "published": MessageToDict(publish, preserving_proto_field_name=True),
        "functions": functions,
        "secrets": [
            {
                "name": request.deployment_name,  # "" for a function's env=
                "required_keys": list(request.required_keys),
                "env": dict(request.env_dict),
            }
            for request in plane.requests("SecretGetOrCreate")
        ],
        "images": [list(r.image.dockerfile_commands) for r in plane.requests("ImageGetOrCreate")],
        "mounts": [[f.filename for f in r.files] for r in plane.requests("MountGetOrCreate")],
        "calls": [name for name, _ in plane.calls],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(deploy())))
