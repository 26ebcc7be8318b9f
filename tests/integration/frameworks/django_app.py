"""The routes of ``tests/integration/frameworks`` in Django, with Channels for the WebSocket.

One module is the whole project: its settings, its URLs (``ROOT_URLCONF`` is this module),
its views and its consumer. Django has no lifespan and no background tasks, so it serves
neither ``/state`` nor ``/jobs``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="not-a-secret: the test suite's throwaway project",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[f"{__name__}.TeapotMiddleware"],
    INSTALLED_APPS=[],
    USE_TZ=True,
    DATA_UPLOAD_MAX_MEMORY_SIZE=None,
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import (  # noqa: E402
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path, reverse  # noqa: E402

from tests.integration.frameworks import (  # noqa: E402
    CLOSE_CODE,
    CLOSE_REASON,
    SUBPROTOCOL,
    Teapot,
    echo_reply,
    endless,
    event_stream,
    item,
    numbered_chunks,
    payload,
    say,
    stored,
    uploaded,
)


class TeapotMiddleware:
    """The app's own handler of ``Teapot``: Django's ``process_exception`` hook."""

    async_capable, sync_capable = True, False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        return await self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Teapot):
            return JsonResponse({"error": "teapot"}, status=500)
        return None


async def items(request: HttpRequest, item_id: int | None = None) -> HttpResponse:
    if request.method == "POST":
        try:
            return JsonResponse(stored(json.loads(request.body)), status=201)
        except ValueError as error:
            return JsonResponse({"error": str(error)}, status=422)
    assert item_id is not None
    return JsonResponse(item(item_id, request.GET.get("q"), int(request.GET.get("limit", 10))))


async def headers(request: HttpRequest) -> HttpResponse:
    token = request.headers.get("x-token")
    response = JsonResponse({"token": token, "session": request.COOKIES.get("session")})
    response["X-Echo"] = token or ""
    response.set_cookie("seen", "yes", httponly=True)
    return response


async def stream(request: HttpRequest) -> HttpResponse:
    return StreamingHttpResponse(numbered_chunks(), content_type="text/plain")


async def events(request: HttpRequest) -> HttpResponse:
    return StreamingHttpResponse(event_stream(), content_type="text/event-stream")


async def endless_events(request: HttpRequest) -> HttpResponse:
    return StreamingHttpResponse(endless(), content_type="text/event-stream")


async def upload(request: HttpRequest) -> HttpResponse:
    file = request.FILES["file"]
    return JsonResponse(uploaded(file.name, file.read(), request.POST.get("note")))


async def file(request: HttpRequest) -> HttpResponse:
    return FileResponse(payload().open("rb"))


async def who(request: HttpRequest) -> HttpResponse:
    return JsonResponse({
        "client": [request.META["REMOTE_ADDR"], request.META["REMOTE_PORT"]],
        "url": request.build_absolute_uri(),
        "root_path": request.META["SCRIPT_NAME"],
        "item_url": request.build_absolute_uri(reverse("item", args=[3])),
    })


async def teapot(request: HttpRequest) -> HttpResponse:
    raise Teapot


async def crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("unhandled in the route")


urlpatterns = [
    path("items/<int:item_id>", items, name="item"),
    path("items", items),
    path("headers", headers),
    path("stream", stream),
    path("events", events),
    path("endless", endless_events),
    path("upload", upload),
    path("file", file),
    path("whoami", who),
    path("teapot", teapot),
    path("crash", crash),
]


class Echo(AsyncWebsocketConsumer):  # type: ignore[misc]  # Channels has no types
    async def connect(self) -> None:
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in self.scope["subprotocols"] else None)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        action, reply = echo_reply(text_data, bytes_data)
        if action == "close":
            await self.close(CLOSE_CODE, CLOSE_REASON)
        elif isinstance(reply, str):
            await self.send(text_data=reply)
        else:
            await self.send(bytes_data=reply)

    async def disconnect(self, code: int) -> None:
        say(f"client left: {code}")


application: Any = ProtocolTypeRouter({
    "http": get_asgi_application(),
    "websocket": URLRouter([path("ws", Echo.as_asgi())]),
})
app = application
