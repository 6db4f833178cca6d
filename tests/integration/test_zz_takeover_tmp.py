import pytest, pytest_twisted
from native_client import events, of_type
pytest_plugins = ("native_fixtures",)

@pytest.mark.parametrize("kind", ["xhr", "sse", "ws"])
@pytest_twisted.ensureDeferred
async def test_new_connection_takes_over(native_server, kind):
    server = native_server()
    if kind == "ws":
        first = await server.ws(subject="/r")
    else:
        first = await server.opened(kind, subject="/r")
    e1 = server.publish("/r", "1")
    await first.until(1)
    e2 = server.publish("/r", "2")   # in flight to the old connection: the client never sees it
    await first.until(2)
    if kind == "ws":
        second = await server.ws(session=of_type(first.messages, "open")[0]["session"], last_event_id=e1)
    else:
        second = await server.opened(kind, session=of_type(first.messages, "open")[0]["session"], last_event_id=e1)
    e3 = server.publish("/r", "3")
    got = await second.until(2)
    assert [m["id"] for m in events(got)] == [e2, e3]
