"""The official Kapso Python SDK (kapso-whatsapp-cloud-api, pinned in ../requirements.txt) driven
against a running wagate. Run through ../run.sh, which starts `wagate serve --sandbox` and exports
WAGATE_BASE_URL (http://127.0.0.1:<port>/meta/whatsapp), WAGATE_API_KEY and WAGATE_EMULATOR_URL.

The SDK is used unchanged except for ONE override: ``WhatsAppClient.is_kapso_proxy`` only returns
True when the substring "kapso.ai" occurs in the base URL, so the Kapso-only resources
(messages.list, conversations, contacts, calls) refuse any self-hosted host. ``make_client`` sets
it to return True on the instance (see ../README.md). Everything else is the SDK's public API.
Only the seeding of inbound traffic (what Meta would deliver) uses the emulator's control API.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import httpx
import pydantic
import pytest

from kapso_whatsapp import (
    KAPSO_MESSAGE_FIELDS,
    AuthenticationError,
    KapsoProxyRequiredError,
    WhatsAppAPIError,
    WhatsAppClient,
    build_kapso_fields,
)
from kapso_whatsapp.types import (
    ConversationKapso,
    ListMessagesResponse,
    MediaMetadata,
    SendMessageResponse,
    WhatsAppMessageResponse,
)

BASE_URL = os.environ.get("WAGATE_BASE_URL")
API_KEY = os.environ.get("WAGATE_API_KEY")
EMULATOR = os.environ.get("WAGATE_EMULATOR_URL")
PNID = os.environ.get("WAGATE_PNID", "100000000000001")
WABA = os.environ.get("WAGATE_WABA", "200000000000001")

if not (BASE_URL and API_KEY and EMULATOR):
    pytest.exit(
        "WAGATE_BASE_URL, WAGATE_API_KEY and WAGATE_EMULATOR_URL must be set (use tests/sdk/run.sh)",
        returncode=2,
    )


def make_client() -> WhatsAppClient:
    """The client exactly as a Python user builds it, plus the one documented override."""
    client = WhatsAppClient(kapso_api_key=API_KEY, base_url=BASE_URL)
    client.is_kapso_proxy = lambda: True  # type: ignore[method-assign]
    return client


def run(body: Callable[[WhatsAppClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with make_client() as client:
            return await body(client)

    return asyncio.run(main())


# ------------------------------------------------------------------------------------------------
# Identities unique to this run, so counts are exact even on a reused database.


def _digits(n: int) -> str:
    return "".join(random.choice("0123456789") for _ in range(n))


RUN = _digits(6)
A = f"1555201{RUN}"  # main user: every inbound type, every outbound send
C = f"1555203{RUN}"  # a second user whose conversation gets ended
D = f"1555204{RUN}"  # a user whose number changes (system message)
D_NEW = f"1555205{RUN}"
B = f"US.2{RUN}{_digits(12)}"  # BSUID-only user (no phone number)
CALL_A = f"wacid.PY{RUN}A"
CALL_C = f"wacid.PY{RUN}C"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)

STORED_TYPE = {
    "text": "text", "image": "image", "audio": "audio", "video": "video",
    "document": "document", "sticker": "sticker", "location": "location",
    "contacts": "contacts", "button_reply": "interactive", "list_reply": "interactive",
    "nfm_reply": "interactive", "button": "button", "reaction": "reaction", "order": "order",
    # Not in the SDK's MessageType enum: the proxy has to map these (contract: to "unknown").
    "unsupported": "unknown", "request_welcome": "unknown",
}
OUTBOUND_TYPE = {
    "text": "text", "template": "template", "image_by_id": "image", "image_by_link": "image",
    "buttons": "interactive", "location": "location", "reaction": "reaction", "contacts": "contacts",
}


def final_status(name: str) -> str:
    """Meta (and the emulator) only ever report `sent` for reactions."""
    return "sent" if name == "reaction" else "read"


def control(path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{EMULATOR}/_sandbox/{path}", json={"phone_number_id": PNID, **body}, timeout=30
    )
    assert response.status_code < 300, f"emulator {path} {response.status_code}: {response.text}"
    data = response.json()
    assert data.get("webhook_status") == 200, f"wagate refused the webhook: {data}"
    return data


def inbound(**body: Any) -> str:
    data = control("inbound", body)
    return data["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"]


async def raw_messages(client: WhatsAppClient, **params: Any) -> list[dict[str, Any]]:
    """Every stored message as raw dicts, through the SDK's public ``request`` (no validation)."""
    items: list[dict[str, Any]] = []
    after = None
    for _ in range(200):
        query = {"limit": 100, **params, **({"after": after} if after else {})}
        page = await client.request("GET", f"{PNID}/messages", params=query)
        items += page["data"]
        after = ((page.get("paging") or {}).get("cursors") or {}).get("after")
        if not after:
            return items
    raise AssertionError("more than 200 pages")


async def walk(list_fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> list[Any]:
    """Pages with ``after`` until the last page; returns the pages (models or dicts)."""
    pages = []
    after = None
    for _ in range(200):
        page = await list_fn(**kwargs, **({"after": after} if after else {}))
        pages.append(page)
        if isinstance(page, dict):
            assert isinstance(page["data"], list), page
            after = page["paging"]["cursors"].get("after")
        else:
            after = page.paging.cursors.after
        if not after:
            return pages
        assert isinstance(after, str)
    raise AssertionError("more than 200 pages: the after cursor does not advance")


def items(pages: list[Any]) -> list[Any]:
    return [x for p in pages for x in (p["data"] if isinstance(p, dict) else p.data)]


def ids(xs: list[Any]) -> list[str]:
    return [x["id"] if isinstance(x, dict) else x.id for x in xs]


def assert_each_once(actual: list[str], expected: list[str], what: str) -> None:
    dupes = sorted({i for i in actual if actual.count(i) > 1})
    assert dupes == [], f"{what}: ids seen more than once: {dupes}"
    missing = [i for i in expected if i not in actual]
    assert missing == [], f"{what}: seeded ids never seen: {missing}"


# ------------------------------------------------------------------------------------------------
# Seed: inbound of every type, outbound sends through the SDK, two calls.


@pytest.fixture(scope="session")
def seed() -> dict[str, Any]:
    s: dict[str, Any] = {"inbound": {}, "outbound": {}, "send_responses": {}}
    s["inbound"]["text"] = inbound(**{"from": A, "profile_name": "Ada PY", "type": "text",
                                      "text": {"body": f"hi {RUN}"}})

    async def sends(client: WhatsAppClient) -> None:
        async def send(name: str, coro: Awaitable[SendMessageResponse]) -> None:
            response = await coro
            s["send_responses"][name] = response
            s["outbound"][name] = response.messages[0].id

        m = client.messages
        await send("text", m.send_text(phone_number_id=PNID, to=A, body=f"hello {RUN}",
                                       context={"message_id": s["inbound"]["text"]}))
        await send("template", m.send_template(phone_number_id=PNID, to=A,
                                               template={"name": "hello_world", "language": "en_US"}))
        upload = await client.media.upload(phone_number_id=PNID, file=PNG, type="image/png", filename="dot.png")
        s["media_id"] = upload.id
        await send("image_by_id", m.send_image(phone_number_id=PNID, to=A, image={"id": upload.id, "caption": "a dot"}))
        await send("image_by_link", m.send_image(phone_number_id=PNID, to=A, image={"link": "https://example.com/dot.png"}))
        await send("buttons", m.send_interactive_buttons(
            phone_number_id=PNID, to=A, body_text="Pick one",
            buttons=[{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]))
        await send("location", m.send_location(phone_number_id=PNID, to=A,
                                               location={"latitude": 48.8566, "longitude": 2.3522, "name": "Paris"}))
        await send("reaction", m.send_reaction(phone_number_id=PNID, to=A,
                                               reaction={"message_id": s["inbound"]["text"], "emoji": "👍"}))
        await send("contacts", m.send_contacts(phone_number_id=PNID, to=A, contacts=[
            {"name": {"formatted_name": "Grace Hopper", "first_name": "Grace"},
             "phones": [{"phone": "+15550100009", "type": "WORK"}]}]))

    run(sends)

    for kind in ["image", "audio", "video", "document", "sticker", "location", "contacts",
                 "button_reply", "list_reply", "nfm_reply", "button", "order", "unsupported",
                 "request_welcome"]:
        s["inbound"][kind] = inbound(**{"from": A, "profile_name": "Ada PY", "type": kind})
    s["inbound"]["reaction"] = inbound(**{"from": A, "profile_name": "Ada PY", "type": "reaction",
                                          "reaction": {"message_id": s["outbound"]["text"], "emoji": "❤️"}})
    s["bsuid_text"] = inbound(user_id=B, profile_name="Bo PY", type="text", text={"body": f"bsuid {RUN}"})
    s["c_text"] = inbound(**{"from": C, "profile_name": "Cy PY", "type": "text", "text": {"body": f"cy {RUN}"}})
    s["d_text"] = inbound(**{"from": D, "profile_name": "Di PY", "type": "text", "text": {"body": f"di {RUN}"}})
    s["system"] = inbound(**{"from": D, "profile_name": "Di PY", "type": "system", "system": {"wa_id": D_NEW}})

    control("calls", {"event": "connect", "call_id": CALL_A, "from": A, "profile_name": "Ada PY"})
    control("calls", {"event": "terminate", "call_id": CALL_A, "from": A, "status": "COMPLETED", "duration": 42})
    control("calls", {"event": "connect", "call_id": CALL_C, "from": C, "profile_name": "Cy PY"})
    control("calls", {"event": "terminate", "call_id": CALL_C, "from": C, "status": "FAILED"})

    s["a_messages"] = list(s["inbound"].values()) + list(s["outbound"].values())
    s["all"] = s["a_messages"] + [s["bsuid_text"], s["c_text"], s["d_text"], s["system"]]

    # Ingest and the status webhooks are asynchronous: wait (bounded) until every message is
    # listed and the sends reached their final status; the tests report whatever is missing.
    want_status = {mid: final_status(name) for name, mid in s["outbound"].items()}

    async def settle(client: WhatsAppClient) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + 20
        while True:
            stored = {m["id"]: m for m in await raw_messages(client)}
            missing = [i for i in s["all"] if i not in stored]
            lagging = [i for i, st in want_status.items()
                       if i in stored and (stored[i].get("kapso") or {}).get("status") != st]
            if (not missing and not lagging) or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.25)

    stored = run(settle)
    s["not_stored"] = [i for i in s["all"] if i not in stored]
    s["conversation_a"] = ((stored.get(s["inbound"]["text"]) or {}).get("kapso") or {}).get("whatsapp_conversation_id")
    s["conversation_c"] = ((stored.get(s["c_text"]) or {}).get("kapso") or {}).get("whatsapp_conversation_id")
    return s


# ------------------------------------------------------------------------------------------------
# The one override, and sends


def test_unmodified_client_refuses_a_self_hosted_host() -> None:
    """Why the override exists: without it the SDK refuses before sending anything."""
    async def body(_: WhatsAppClient) -> None:
        plain = WhatsAppClient(kapso_api_key=API_KEY, base_url=BASE_URL)
        try:
            assert plain.is_kapso_proxy() is False
            with pytest.raises(KapsoProxyRequiredError):
                await plain.messages.list(phone_number_id=PNID)
        finally:
            await plain.close()

    run(body)


def test_sends_return_valid_send_responses(seed: dict[str, Any]) -> None:
    assert len(seed["send_responses"]) == 8
    for name, r in seed["send_responses"].items():
        assert isinstance(r, SendMessageResponse), name
        assert r.messaging_product == "whatsapp", name
        assert r.contacts[0].input == A, name
        assert r.contacts[0].wa_id == A, name
        assert r.messages[0].id.startswith("wamid."), name


def test_every_seeded_message_is_stored(seed: dict[str, Any]) -> None:
    assert seed["not_stored"] == []


def test_every_stored_message_validates_as_whatsapp_message_response(seed: dict[str, Any]) -> None:
    """Diagnostic view of what messages.list does for a whole page: validate each stored item
    (this suite's and the JS suite's) with the SDK's own model and list every failure."""
    async def body(client: WhatsAppClient) -> list[str]:
        failures = []
        for fields in (None, "kapso(default)"):
            for raw in await raw_messages(client, **({"fields": fields} if fields else {})):
                try:
                    WhatsAppMessageResponse.model_validate(raw)
                except pydantic.ValidationError as e:
                    errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']} (got {x.get('input')!r})"
                                     for x in e.errors())
                    failures.append(f"fields={fields} {raw.get('type')} {raw.get('id')}: {errs}")
        return failures

    failures = run(body)
    assert failures == [], "\n".join(failures)


# ------------------------------------------------------------------------------------------------
# Message history through messages.list / query / list_by_conversation


def test_list_without_fields_includes_kapso(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> ListMessagesResponse:
        return await client.messages.list(phone_number_id=PNID)

    page = run(body)
    assert isinstance(page, ListMessagesResponse)
    assert len(page.data) == 20, "default limit is 20 (the SDK always sends limit=20)"
    for m in page.data:
        assert m.kapso is not None, m.id
        assert m.kapso.direction is not None, m.id


def test_list_walks_every_message_once_with_after_and_before(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> tuple[list[Any], list[Any], Any]:
        pages = await walk(client.messages.list, phone_number_id=PNID, limit=7)
        big = await walk(client.messages.query, phone_number_id=PNID, limit=100)
        back = await client.messages.list(phone_number_id=PNID, limit=7,
                                          before=pages[-1].paging.cursors.before)
        return pages, big, back

    pages, big, back = run(body)
    seen = ids(items(pages))
    assert_each_once(seen, seed["all"], "walk limit=7")
    assert all(len(p.data) <= 7 for p in pages)
    assert seen == ids(items(big)), "limit=7 and limit=100 walks must agree (same order)"
    assert pages[0].paging.cursors.before is None, "the first page has no before cursor"
    assert ids(back.data) == ids(pages[-2].data), "the last page's before cursor gives the page before it"


def test_fields_kapso_empty_omits_the_block(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> ListMessagesResponse:
        return await client.messages.list_by_conversation(
            phone_number_id=PNID, conversation_id=seed["conversation_a"], limit=100, fields="kapso()")

    page = run(body)
    assert len(page.data) == len(seed["a_messages"])
    for m in page.data:
        assert m.kapso is None, f"{m.id} still has kapso"


@pytest.mark.parametrize("fields", ["kapso(default)", build_kapso_fields()])
def test_fields_all_kapso_fields(seed: dict[str, Any], fields: str) -> None:
    async def body(client: WhatsAppClient) -> ListMessagesResponse:
        return await client.messages.list_by_conversation(
            phone_number_id=PNID, conversation_id=seed["conversation_a"], limit=100, fields=fields)

    page = run(body)
    assert len(page.data) == len(seed["a_messages"])
    for m in page.data:
        assert m.kapso is not None
        missing = set(KAPSO_MESSAGE_FIELDS) - m.kapso.model_fields_set
        assert not missing, f"{fields}: {m.id} ({m.type.value}) lacks {sorted(missing)}"
        assert isinstance(m.kapso.content, (str, type(None)))


def test_fields_subset(seed: dict[str, Any]) -> None:
    fields = build_kapso_fields(["direction", "status"])
    assert fields == "kapso(direction,status)"

    async def body(client: WhatsAppClient) -> ListMessagesResponse:
        return await client.messages.list_by_conversation(
            phone_number_id=PNID, conversation_id=seed["conversation_a"], limit=100, fields=fields)

    page = run(body)
    assert len(page.data) == len(seed["a_messages"])
    for m in page.data:
        assert m.kapso is not None and m.kapso.model_fields_set == {"direction", "status"}, m.id


def test_list_by_conversation_walks_one_conversation(seed: dict[str, Any]) -> None:
    assert seed["conversation_a"], "no whatsapp_conversation_id on the seeded text"

    async def body(client: WhatsAppClient) -> list[Any]:
        return await walk(client.messages.list_by_conversation, phone_number_id=PNID,
                          conversation_id=seed["conversation_a"], limit=5)

    got = items(run(body))
    assert_each_once(ids(got), seed["a_messages"], "conversation walk")
    assert len(got) == len(seed["a_messages"])
    assert {m.kapso.whatsapp_conversation_id for m in got} == {seed["conversation_a"]}


def test_list_filters(seed: dict[str, Any]) -> None:
    conv = seed["conversation_a"]

    async def body(client: WhatsAppClient) -> dict[str, Any]:
        q = client.messages.query
        return {
            "inbound": items(await walk(q, phone_number_id=PNID, conversation_id=conv, direction="inbound", limit=100)),
            "outbound": items(await walk(q, phone_number_id=PNID, conversation_id=conv, direction="outbound", limit=100)),
            "read": items(await walk(q, phone_number_id=PNID, conversation_id=conv, status="read", limit=100)),
            "future": (await q(phone_number_id=PNID, since="2999-01-01T00:00:00Z")).data,
            "past": (await q(phone_number_id=PNID, until="2000-01-01T00:00:00Z")).data,
        }

    r = run(body)
    assert set(ids(r["inbound"])) == set(seed["inbound"].values())
    assert set(ids(r["outbound"])) == set(seed["outbound"].values())
    assert {m.kapso.status.value for m in r["read"]} == {"read"}
    assert {i for n, i in seed["outbound"].items() if final_status(n) == "read"} <= set(ids(r["read"]))
    assert r["future"] == [] and r["past"] == []


def test_list_items_carry_the_message_content(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> dict[str, WhatsAppMessageResponse]:
        pages = await walk(client.messages.list_by_conversation, phone_number_id=PNID,
                           conversation_id=seed["conversation_a"], limit=100, fields="kapso(default)")
        return {m.id: m for m in items(pages)}

    by_id = run(body)
    i, o = seed["inbound"], seed["outbound"]
    for kind, mid in i.items():
        m = by_id[mid]
        assert m.type.value == STORED_TYPE[kind], f"{kind}: stored type {m.type.value}"
        assert m.from_ == A and m.kapso.direction.value == "inbound", kind
        assert m.timestamp.isdigit(), kind
    for name, mid in o.items():
        m = by_id[mid]
        assert m.type.value == OUTBOUND_TYPE[name], f"{name}: stored type {m.type.value}"
        assert m.to == A and m.kapso.direction.value == "outbound", name
        assert m.kapso.status.value == final_status(name), f"{name}: status {m.kapso.status}"

    assert by_id[i["text"]].text.body == f"hi {RUN}"
    assert by_id[i["text"]].kapso.contact_name == "Ada PY"
    assert by_id[i["image"]].image.id and by_id[i["image"]].image.mime_type == "image/png"
    assert isinstance(by_id[i["location"]].location.latitude, float)
    assert by_id[i["order"]].order.catalog_id == "300000000000001"
    assert by_id[i["order"]].kapso.order_text == "Please deliver to the front desk"
    assert by_id[i["button_reply"]].interactive.button_reply.id == "yes"
    assert by_id[i["list_reply"]].interactive.list_reply.id == "row_1"
    assert by_id[i["nfm_reply"]].interactive.type == "nfm_reply"
    assert by_id[i["nfm_reply"]].kapso.flow_token == "sandbox-flow-token"
    assert (by_id[i["nfm_reply"]].kapso.flow_response or {}).get("answer") == "yes"
    assert by_id[i["reaction"]].reaction.message_id == o["text"]
    assert by_id[i["reaction"]].reaction.emoji == "❤️"
    assert by_id[i["contacts"]].contacts[0].name.formatted_name == "Jane Doe"
    # (WhatsAppMessageResponse has no `button` field; the quick-reply text is in kapso.content.)
    assert by_id[i["button"]].kapso.content == "Yes"
    assert (by_id[o["template"]].template or {}).get("name") == "hello_world"
    assert by_id[o["text"]].text.body == f"hello {RUN}"
    assert by_id[o["text"]].context.id == i["text"]
    assert by_id[o["image_by_id"]].image.id == seed["media_id"]
    assert by_id[o["contacts"]].contacts[0].name.formatted_name == "Grace Hopper"
    assert by_id[o["location"]].location.latitude == pytest.approx(48.8566)


# ------------------------------------------------------------------------------------------------
# Conversations


def test_inbound_media_is_kept_and_its_media_url_downloads(seed: dict[str, Any]) -> None:
    """The media vault: the SDK's models carry media_url / media_data once the file is kept, and
    the URL serves the very bytes Meta (the emulator) holds, keyless (signed) and with the key."""
    image_id = seed["inbound"]["image"]

    async def body(client: WhatsAppClient) -> Any:
        for _ in range(200):
            pages = await walk(client.messages.list_by_conversation, phone_number_id=PNID,
                               conversation_id=seed["conversation_a"], limit=100,
                               fields="kapso(has_media,media_url,media_data)")
            image = {m.id: m for m in items(pages)}[image_id]
            if image.kapso.media_url:
                return image
            await asyncio.sleep(0.1)
        raise AssertionError("the image was never kept")

    image = run(body)
    assert image.kapso.has_media is True
    assert image.kapso.media_data.url == image.kapso.media_url
    assert image.kapso.media_data.content_type == "image/png"
    original = httpx.get(f"{EMULATOR}/_sandbox/media/{image.image.id}/download",
                         headers={"Authorization": "Bearer sandbox-token-100000000000001"}).content
    assert image.kapso.media_data.byte_size == len(original)
    keyless = httpx.get(image.kapso.media_url, timeout=30)
    assert keyless.status_code == 200 and keyless.content == original
    assert keyless.headers["x-content-type-options"] == "nosniff"
    stable = image.kapso.media_url.split("?")[0]
    with_key = httpx.get(stable, headers={"X-API-Key": API_KEY}, timeout=30)
    assert with_key.status_code == 200 and with_key.content == original
    assert httpx.get(stable, timeout=30).status_code == 404


def test_conversations_list_get_and_paging(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        c = client.conversations
        return {
            "one": await c.list(phone_number_id=PNID, phone_number=A),
            "walk": items(await walk(c.list, phone_number_id=PNID, limit=2)),
            "get": await c.get(phone_number_id=PNID, conversation_id=seed["conversation_a"]),
            "kapso": await c.get(phone_number_id=PNID, conversation_id=seed["conversation_a"],
                                 fields="kapso(contact_name,messages_count,last_message_id)"),
        }

    r = run(body)
    assert ids(r["one"]["data"]) == [seed["conversation_a"]]
    assert_each_once(ids(r["walk"]), [seed["conversation_a"], seed["conversation_c"]], "conversation walk")
    conv = r["get"]
    assert conv["id"] == seed["conversation_a"]
    assert conv["phone_number_id"] == PNID
    assert conv["status"] == "active"
    assert conv["phone_number"] in (A, f"+{A}")
    k = r["kapso"]["kapso"]
    assert k["contact_name"] == "Ada PY"
    assert k["messages_count"] == len(seed["a_messages"])
    assert k["last_message_id"] in seed["a_messages"]


def test_conversations_kapso_default_fields(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        return await client.conversations.list(phone_number_id=PNID, phone_number=A, fields="kapso(default)")

    conv = run(body)["data"][0]
    fields = {"contact_name", "messages_count", "last_message_id", "last_message_type",
              "last_message_timestamp", "last_message_text", "last_inbound_at", "last_outbound_at"}
    assert fields <= set(conv.get("kapso") or {}), conv.get("kapso")
    k = ConversationKapso.model_validate(conv["kapso"])  # the SDK's model for this block
    assert k.messages_count == len(seed["a_messages"])
    assert k.last_inbound_at is not None and k.last_outbound_at is not None


def test_conversations_list_last_active_filters_with_aware_datetimes(seed: dict[str, Any]) -> None:
    """The SDK sends datetime.isoformat(): `2026-01-01T10:00:00.123456+00:00`."""
    now = datetime.now(timezone.utc)

    async def body(client: WhatsAppClient) -> tuple[list[Any], list[Any]]:
        c = client.conversations
        recent = items(await walk(c.list, phone_number_id=PNID, last_active_since=now - timedelta(hours=1),
                                  last_active_until=now + timedelta(hours=1), limit=100))
        old = items(await walk(c.list, phone_number_id=PNID, last_active_until=now - timedelta(days=3650)))
        return recent, old

    recent, old = run(body)
    assert seed["conversation_a"] in ids(recent)
    assert old == []


def test_conversations_list_last_active_since_with_a_naive_datetime(seed: dict[str, Any]) -> None:
    """A naive datetime (datetime.utcnow()) is sent without an offset: `2026-01-01T10:00:00.123456`."""
    naive = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)

    async def body(client: WhatsAppClient) -> dict[str, Any]:
        return await client.conversations.list(phone_number_id=PNID, last_active_since=naive, limit=100)

    assert seed["conversation_a"] in ids(run(body)["data"])


def test_conversations_update_status_ended(seed: dict[str, Any]) -> None:
    conv_c = seed["conversation_c"]
    assert conv_c

    async def body(client: WhatsAppClient) -> dict[str, Any]:
        c = client.conversations
        return {
            "update": await c.update_status(conversation_id=conv_c, status="ended"),
            "get": await c.get(phone_number_id=PNID, conversation_id=conv_c),
            "ended": items(await walk(c.list, phone_number_id=PNID, status="ended", limit=100)),
            "active": items(await walk(c.list, phone_number_id=PNID, status="active", limit=100)),
        }

    r = run(body)
    assert r["update"] == {"success": True}
    assert r["get"]["status"] == "ended"
    assert conv_c in ids(r["ended"])
    assert conv_c not in ids(r["active"])
    assert seed["conversation_a"] in ids(r["active"])


def test_conversations_get_unknown_raises_sdk_error(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> None:
        await client.conversations.get(phone_number_id=PNID,
                                       conversation_id="00000000-0000-4000-8000-000000000000")

    with pytest.raises(WhatsAppAPIError) as info:
        run(body)
    assert info.value.status_code is not None and 400 <= info.value.status_code < 500
    assert str(info.value)


# ------------------------------------------------------------------------------------------------
# Contacts


def test_contacts_list_get_and_paging(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        c = client.contacts
        return {
            "one": await c.list(phone_number_id=PNID, wa_id=A),
            "plus": await c.list(phone_number_id=PNID, wa_id=f"+{A}"),
            "walk": items(await walk(c.list, phone_number_id=PNID, limit=2)),
            "no_customer": items(await walk(c.list, phone_number_id=PNID, has_customer=False, limit=100)),
            "a": await c.get(phone_number_id=PNID, wa_id=A),
            "b": await c.get(phone_number_id=PNID, wa_id=B),
        }

    r = run(body)
    assert len(r["one"]["data"]) == 1 and r["one"]["data"][0]["wa_id"] == A
    assert ids(r["plus"]["data"]) == ids(r["one"]["data"]), "wa_id=+E.164 finds the same contact"
    keys = [x.get("wa_id") or x.get("business_scoped_user_id") for x in r["walk"]]
    assert_each_once(keys, [A, B, C], "contact walk")
    assert r["one"]["data"][0]["id"] in ids(r["no_customer"])
    assert r["a"]["wa_id"] == A and r["a"]["profile_name"] == "Ada PY"
    assert r["b"]["business_scoped_user_id"] == B
    assert r["b"].get("wa_id") is None
    assert r["b"]["profile_name"] == "Bo PY"


def test_contacts_update(seed: dict[str, Any]) -> None:
    """PATCH contacts/{wa_id} with phone_number_id in the body (the Python SDK's route)."""
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        c = client.contacts
        return {
            "update": await c.update(phone_number_id=PNID, wa_id=A, name="Ada (VIP)", metadata={"tier": "gold"}),
            "a": await c.get(phone_number_id=PNID, wa_id=A),
            "update_b": await c.update(phone_number_id=PNID, wa_id=B, name="Bo (BSUID)"),
            "b": await c.get(phone_number_id=PNID, wa_id=B),
        }

    r = run(body)
    assert r["update"] == {"success": True}
    assert r["a"]["display_name"] == "Ada (VIP)"
    assert r["a"]["metadata"] == {"tier": "gold"}
    assert r["update_b"] == {"success": True}
    assert r["b"]["display_name"] == "Bo (BSUID)"


# ------------------------------------------------------------------------------------------------
# Calls


def test_calls_list_and_get(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        c = client.calls
        return {
            "walk": items(await walk(c.list, phone_number_id=PNID, limit=1)),
            "inbound": items(await walk(c.list, phone_number_id=PNID, direction="INBOUND")),
            "a": await c.get(phone_number_id=PNID, call_id=CALL_A),
            "c": await c.get(phone_number_id=PNID, call_id=CALL_C),
        }

    r = run(body)
    mine = [x for x in r["walk"] if CALL_A in (x.get("call_id"), x["id"]) or CALL_C in (x.get("call_id"), x["id"])]
    assert len(mine) == 2, r["walk"]
    assert_each_once(ids(r["walk"]), ids(mine), "call walk")
    assert {x["id"] for x in mine} <= set(ids(r["inbound"]))
    a = r["a"]
    assert CALL_A in (a.get("call_id"), a["id"]), a
    assert a["direction"].lower() == "inbound"
    assert a["status"].lower() == "completed"
    assert a["duration_seconds"] == 42
    assert r["c"]["status"].lower() == "failed"


def test_calls_get_by_listed_id(seed: dict[str, Any]) -> None:
    """calls.get(list[0].id): the listed id addresses the call as Meta's call id does."""

    async def body(client: WhatsAppClient) -> dict[str, Any]:
        listed = items(await walk(client.calls.list, phone_number_id=PNID, limit=1))
        mine = next(x for x in listed if x.get("call_id") == CALL_A)
        return {"listed": mine, "got": await client.calls.get(phone_number_id=PNID, call_id=mine["id"])}

    r = run(body)
    assert r["listed"]["id"] != CALL_A, r
    assert r["got"]["id"] == r["listed"]["id"], r
    assert r["got"]["call_id"] == CALL_A, r
    assert r["got"]["duration_seconds"] == 42, r


# ------------------------------------------------------------------------------------------------
# Meta passthrough


def test_business_profile() -> None:
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        return await client.phone_numbers.get_business_profile(phone_number_id=PNID)

    r = run(body)
    assert len(r["data"]) == 1 and r["data"][0]["messaging_product"] == "whatsapp", r


def test_templates_list() -> None:
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        return await client.templates.list(business_account_id=WABA, limit=100)

    r = run(body)
    names = [t["name"] for t in r["data"]]
    assert "hello_world" in names, names
    assert "paging" in r


def test_media_upload_and_get(seed: dict[str, Any]) -> None:
    async def body(client: WhatsAppClient) -> MediaMetadata:
        return await client.media.get(media_id=seed["media_id"], phone_number_id=PNID)

    meta = run(body)
    assert meta.id == seed["media_id"]
    assert meta.mime_type == "image/png"
    assert meta.file_size == len(PNG)


def test_media_download(seed: dict[str, Any]) -> None:
    """media.download fetches metadata.url with the client's headers (X-API-Key)."""
    async def body(client: WhatsAppClient) -> tuple[bytes, str]:
        meta = await client.media.get(media_id=seed["media_id"], phone_number_id=PNID)
        return await client.media.download(media_id=seed["media_id"], phone_number_id=PNID), meta.url

    content, url = run(body)
    assert content == PNG, f"url={url} answered: {content[:300]!r}"


def test_templates_get_by_id() -> None:
    """The Python SDK fetches one template as GET /{template_id} (no WABA, no phone number in the path)."""
    async def body(client: WhatsAppClient) -> tuple[dict[str, Any], dict[str, Any]]:
        listed = await client.templates.list(business_account_id=WABA, name="hello_world")
        hello = next(t for t in listed["data"] if t["name"] == "hello_world")
        return hello, await client.templates.get(template_id=hello["id"])

    hello, got = run(body)
    assert got.get("id") == hello["id"] and got.get("name") == "hello_world", got


def test_mark_read() -> None:
    async def body(client: WhatsAppClient) -> dict[str, Any]:
        message_id = inbound(**{"from": C, "profile_name": "Cy PY", "type": "text", "text": {"body": "read me"}})
        return await client.messages.mark_read(phone_number_id=PNID, message_id=message_id)

    assert run(body) == {"success": True}


def test_wrong_api_key_raises_authentication_error() -> None:
    async def body(_: WhatsAppClient) -> None:
        bad = WhatsAppClient(kapso_api_key="wag_not-a-real-key", base_url=BASE_URL)
        bad.is_kapso_proxy = lambda: True  # type: ignore[method-assign]
        async with bad:
            await bad.conversations.list(phone_number_id=PNID)

    with pytest.raises(AuthenticationError) as info:
        run(body)
    assert info.value.status_code == 401
