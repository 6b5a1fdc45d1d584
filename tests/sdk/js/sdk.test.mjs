// The official Kapso JS SDK (@kapso/whatsapp-cloud-api, pinned in ../package.json) driven
// unchanged against a running wagate. Run through ../run.sh, which starts `wagate serve
// --sandbox` and exports:
//   WAGATE_BASE_URL      http://127.0.0.1:<port>/meta/whatsapp
//   WAGATE_API_KEY       the project key wagate printed
//   WAGATE_EMULATOR_URL  the Graph emulator (control API under /_sandbox)
//
// Everything that talks to wagate goes through the SDK's public API. Only the seeding of inbound
// traffic (what Meta would deliver) uses the emulator's control API directly.

import { before, test } from "node:test";
import assert from "node:assert/strict";
import {
  GraphApiError,
  KAPSO_MESSAGE_FIELDS,
  WhatsAppClient,
  buildKapsoFields,
} from "@kapso/whatsapp-cloud-api";

const BASE_URL = process.env.WAGATE_BASE_URL;
const API_KEY = process.env.WAGATE_API_KEY;
const EMULATOR = process.env.WAGATE_EMULATOR_URL;
const PNID = process.env.WAGATE_PNID ?? "100000000000001";
const WABA = process.env.WAGATE_WABA ?? "200000000000001";

if (!BASE_URL || !API_KEY || !EMULATOR) {
  throw new Error(
    "WAGATE_BASE_URL, WAGATE_API_KEY and WAGATE_EMULATOR_URL must be set (use tests/sdk/run.sh)",
  );
}

// The SDK exactly as a user constructs it for Kapso (default Graph version v23.0).
const client = new WhatsAppClient({ baseUrl: BASE_URL, kapsoApiKey: API_KEY });

// ---------------------------------------------------------------------------------------------
// Identities unique to this run, so counts are exact even on a reused database.

const digits = (n) => Array.from({ length: n }, () => Math.floor(Math.random() * 10)).join("");
const RUN = digits(6);
const A = `1555101${RUN}`; // main user: every inbound type, every outbound send
const C = `1555103${RUN}`; // a second user whose conversation gets ended
const D = `1555104${RUN}`; // a user whose number changes (system message)
const D_NEW = `1555105${RUN}`;
const B = `US.1${RUN}${digits(12)}`; // BSUID-only user (no phone number)
const CALL_A = `wacid.JS${RUN}A`;
const CALL_C = `wacid.JS${RUN}C`;

const PNG = Uint8Array.from(
  Buffer.from(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
      "1f15c4890000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082",
    "hex",
  ),
);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function control(path, body) {
  const response = await fetch(`${EMULATOR}/_sandbox/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ phone_number_id: PNID, ...body }),
  });
  const json = await response.json();
  assert.ok(response.ok, `emulator ${path} ${response.status}: ${JSON.stringify(json)}`);
  assert.equal(json.webhook_status, 200, `wagate refused the webhook: ${JSON.stringify(json)}`);
  return json;
}

/** Injects one inbound message (as Meta would deliver it) and returns its wamid. */
async function inbound(body) {
  const json = await control("inbound", body);
  return json.envelope.entry[0].changes[0].value.messages[0].id;
}

/** Walks a list with `after` until the last page; returns every page. */
async function walk(list, input) {
  const pages = [];
  let after;
  for (let i = 0; i < 200; i++) {
    const page = await list({ ...input, ...(after ? { after } : {}) });
    assert.ok(Array.isArray(page.data), `page.data must be an array, got ${JSON.stringify(page)}`);
    assert.ok(page.paging && page.paging.cursors, `page.paging.cursors missing: ${JSON.stringify(page.paging)}`);
    pages.push(page);
    after = page.paging.cursors.after;
    if (!after) return pages;
    assert.equal(typeof after, "string");
  }
  throw new Error("more than 200 pages: the after cursor does not advance");
}

const ids = (items) => items.map((x) => x.id);
const flat = (pages) => pages.flatMap((p) => p.data);

function assertEachOnce(actual, expected, what) {
  const counts = new Map();
  for (const id of actual) counts.set(id, (counts.get(id) ?? 0) + 1);
  const dupes = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  assert.deepEqual(dupes, [], `${what}: ids seen more than once`);
  const missing = expected.filter((id) => !counts.has(id));
  assert.deepEqual(missing, [], `${what}: seeded ids never seen`);
}

// camelCase as the SDK applies it to every response key.
const camel = (k) => k.replace(/[_-]([a-z0-9])/g, (_, c) => c.toUpperCase());
const ALL_KAPSO_KEYS = KAPSO_MESSAGE_FIELDS.map(camel);

// ---------------------------------------------------------------------------------------------
// Seed: inbound of every type, outbound sends through the SDK, two calls.

const S = {
  inbound: {}, // request type -> wamid
  outbound: {}, // send name -> wamid
  sendResponses: {},
  mediaId: undefined,
  conversationA: undefined,
  conversationC: undefined,
};
// What each inbound request type is stored as (types outside Meta's list are left open).
const STORED_TYPE = {
  text: "text", image: "image", audio: "audio", video: "video", document: "document",
  sticker: "sticker", location: "location", contacts: "contacts", button_reply: "interactive",
  list_reply: "interactive", nfm_reply: "interactive", button: "button", reaction: "reaction",
  order: "order",
};
// Meta (and the emulator) only ever report `sent` for reactions; everything else reaches `read`.
const FINAL_STATUS = (name) => (name === "reaction" ? "sent" : "read");
const OUTBOUND_TYPE = {
  text: "text", template: "template", imageById: "image", imageByLink: "image",
  buttons: "interactive", location: "location", reaction: "reaction", contacts: "contacts",
};

before(async () => {
  S.inbound.text = await inbound({ from: A, profile_name: "Ada JS", type: "text", text: { body: `hi ${RUN}` } });

  const send = async (name, promise) => {
    const response = await promise;
    S.sendResponses[name] = response;
    S.outbound[name] = response.messages[0].id;
  };
  await send("text", client.messages.sendText({ phoneNumberId: PNID, to: A, body: `hello ${RUN}`, contextMessageId: S.inbound.text }));
  await send("template", client.messages.sendTemplate({ phoneNumberId: PNID, to: A, template: { name: "hello_world", language: { code: "en_US" } } }));
  const upload = await client.media.upload({ phoneNumberId: PNID, type: "image/png", file: PNG, fileName: "dot.png" });
  S.upload = upload;
  S.mediaId = upload.id;
  await send("imageById", client.messages.sendImage({ phoneNumberId: PNID, to: A, image: { id: upload.id, caption: "a dot" } }));
  await send("imageByLink", client.messages.sendImage({ phoneNumberId: PNID, to: A, image: { link: "https://example.com/dot.png" } }));
  await send("buttons", client.messages.sendInteractiveButtons({
    phoneNumberId: PNID, to: A, bodyText: "Pick one",
    buttons: [{ id: "yes", title: "Yes" }, { id: "no", title: "No" }],
  }));
  await send("location", client.messages.sendLocation({ phoneNumberId: PNID, to: A, location: { latitude: 52.52, longitude: 13.405, name: "Berlin" } }));
  await send("reaction", client.messages.sendReaction({ phoneNumberId: PNID, to: A, reaction: { messageId: S.inbound.text, emoji: "👍" } }));
  await send("contacts", client.messages.sendContacts({
    phoneNumberId: PNID, to: A,
    contacts: [{ name: { formattedName: "Grace Hopper", firstName: "Grace" }, phones: [{ phone: "+15550100009", type: "WORK" }] }],
  }));

  for (const type of ["image", "audio", "video", "document", "sticker", "location", "contacts",
    "button_reply", "list_reply", "nfm_reply", "button", "order", "unsupported", "request_welcome"]) {
    S.inbound[type] = await inbound({ from: A, profile_name: "Ada JS", type });
  }
  S.inbound.reaction = await inbound({ from: A, profile_name: "Ada JS", type: "reaction", reaction: { message_id: S.outbound.text, emoji: "❤️" } });
  S.bsuidText = await inbound({ user_id: B, profile_name: "Bo JS", type: "text", text: { body: `bsuid ${RUN}` } });
  S.cText = await inbound({ from: C, profile_name: "Cy JS", type: "text", text: { body: `cy ${RUN}` } });
  S.dText = await inbound({ from: D, profile_name: "Di JS", type: "text", text: { body: `di ${RUN}` } });
  S.system = await inbound({ from: D, profile_name: "Di JS", type: "system", system: { wa_id: D_NEW } });

  // (Call webhooks carry the caller's profile too: keep the same names.)
  await control("calls", { event: "connect", call_id: CALL_A, from: A, profile_name: "Ada JS" });
  await control("calls", { event: "terminate", call_id: CALL_A, from: A, status: "COMPLETED", duration: 42 });
  await control("calls", { event: "connect", call_id: CALL_C, from: C, profile_name: "Cy JS" });
  await control("calls", { event: "terminate", call_id: CALL_C, from: C, status: "FAILED" });

  S.aMessages = [...Object.values(S.inbound), ...Object.values(S.outbound)];
  S.all = [...S.aMessages, S.bsuidText, S.cText, S.dText, S.system];

  // Ingest and the status webhooks are asynchronous: wait (bounded) until every message is
  // readable and the sends have reached `read`; the tests report whatever is still missing.
  const deadline = Date.now() + 20_000;
  const pending = new Set(S.all);
  const unread = new Map(Object.entries(S.outbound).map(([name, id]) => [id, FINAL_STATUS(name)]));
  while (Date.now() < deadline && (pending.size || unread.size)) {
    for (const id of [...pending]) {
      try {
        await client.messages.get({ phoneNumberId: PNID, messageId: id });
        pending.delete(id);
      } catch { /* not stored yet */ }
    }
    for (const [id, final] of [...unread]) {
      try {
        const m = await client.messages.get({ phoneNumberId: PNID, messageId: id, fields: "kapso(status)" });
        if (m?.kapso?.status === final) unread.delete(id);
      } catch { /* not stored yet */ }
    }
    if (pending.size || unread.size) await sleep(250);
  }
  S.notStored = [...pending];
  try {
    const first = await client.messages.get({ phoneNumberId: PNID, messageId: S.inbound.text });
    S.conversationA = first?.kapso?.whatsappConversationId;
    const c = await client.messages.get({ phoneNumberId: PNID, messageId: S.cText });
    S.conversationC = c?.kapso?.whatsappConversationId;
  } catch { /* reported by the tests */ }
});

// ---------------------------------------------------------------------------------------------
// Sends

test("sends return Meta's send response (text, template, media, interactive, location, reaction, contacts)", () => {
  for (const [name, r] of Object.entries(S.sendResponses)) {
    assert.equal(r.messagingProduct, "whatsapp", name);
    assert.equal(r.contacts[0].input, A, name);
    assert.equal(r.contacts[0].waId, A, name);
    assert.match(r.messages[0].id, /^wamid\./, name);
  }
  assert.equal(Object.keys(S.sendResponses).length, 8);
});

test("every seeded message is stored and readable with messages.get", () => {
  assert.deepEqual(S.notStored, [], "messages.get never found these seeded wamids");
});

test("messages.get returns each message with its Meta shape and Kapso block", async () => {
  for (const [type, id] of Object.entries(S.inbound)) {
    const m = await client.messages.get({ phoneNumberId: PNID, messageId: id });
    assert.equal(m.id, id, type);
    assert.match(m.timestamp, /^\d+$/, `${type}: timestamp must be a string of Unix seconds`);
    if (STORED_TYPE[type]) assert.equal(m.type, STORED_TYPE[type], `${type}: stored type`);
    else assert.equal(typeof m.type, "string");
    assert.equal(m.from, A, `${type}: from`);
    assert.equal(m.kapso?.direction, "inbound", `${type}: kapso.direction`);
  }
  for (const [name, id] of Object.entries(S.outbound)) {
    const m = await client.messages.get({ phoneNumberId: PNID, messageId: id });
    assert.equal(m.id, id, name);
    assert.equal(m.type, OUTBOUND_TYPE[name], `${name}: stored type`);
    assert.equal(m.to, A, `${name}: to`);
    assert.equal(m.kapso?.direction, "outbound", `${name}: kapso.direction`);
    assert.equal(m.kapso?.status, FINAL_STATUS(name), `${name}: kapso.status after the status webhooks`);
    assert.match(m.timestamp, /^\d+$/, `${name}: timestamp`);
  }
});

test("an inbound image is kept: messages.get carries mediaUrl, which serves Meta's bytes", async () => {
  let image;
  for (let i = 0; i < 200; i++) {
    image = await client.messages.get({
      phoneNumberId: PNID,
      messageId: S.inbound.image,
      fields: "kapso(has_media,media_url,media_data)",
    });
    if (image.kapso?.mediaUrl) break;
    await sleep(100);
  }
  assert.ok(image.kapso?.mediaUrl, `never kept: ${JSON.stringify(image.kapso)}`);
  assert.equal(image.kapso.hasMedia, true);
  assert.equal(image.kapso.mediaData.url, image.kapso.mediaUrl);
  const original = Buffer.from(
    await (
      await fetch(`${EMULATOR}/_sandbox/media/${image.image.id}/download`, {
        headers: { authorization: "Bearer sandbox-token-100000000000001" },
      })
    ).arrayBuffer(),
  );
  assert.equal(image.kapso.mediaData.byteSize, original.length);
  const keyless = await fetch(image.kapso.mediaUrl);
  assert.equal(keyless.status, 200);
  assert.deepEqual(Buffer.from(await keyless.arrayBuffer()), original);
  const stable = image.kapso.mediaUrl.split("?")[0];
  const withKey = await fetch(stable, { headers: { "x-api-key": API_KEY } });
  assert.equal(withKey.status, 200);
  assert.deepEqual(Buffer.from(await withKey.arrayBuffer()), original);
  assert.equal((await fetch(stable)).status, 404);
});

test("stored payloads carry the message content", async () => {
  const get = (id, fields) => client.messages.get({ phoneNumberId: PNID, messageId: id, ...(fields ? { fields } : {}) });
  const text = await get(S.inbound.text);
  assert.equal(text.text.body, `hi ${RUN}`);
  assert.equal(text.kapso.contactName, "Ada JS");
  assert.equal(text.kapso.whatsappConversationId, S.conversationA);

  const image = await get(S.inbound.image);
  assert.equal(typeof image.image.id, "string");
  assert.ok(image.image.id.length > 0);
  assert.equal(image.image.mimeType, "image/png");

  const location = await get(S.inbound.location);
  assert.equal(typeof location.location.latitude, "number");
  assert.equal(typeof location.location.longitude, "number");

  const order = await get(S.inbound.order);
  assert.equal(order.order.catalogId, "300000000000001");
  assert.equal(order.order.productItems[0].productRetailerId, "sku-1");
  assert.equal(order.kapso.orderText, "Please deliver to the front desk");

  const button = await get(S.inbound.button_reply);
  assert.equal(button.interactive.type, "button_reply");
  assert.equal(button.interactive.buttonReply.id, "yes");
  const list = await get(S.inbound.list_reply);
  assert.equal(list.interactive.listReply.id, "row_1");
  const flow = await get(S.inbound.nfm_reply);
  assert.equal(flow.interactive.type, "nfm_reply");
  assert.equal(flow.kapso.flowToken, "sandbox-flow-token");
  assert.equal(flow.kapso.flowResponse?.answer, "yes");

  const reaction = await get(S.inbound.reaction);
  assert.equal(reaction.reaction.messageId, S.outbound.text);
  assert.equal(reaction.reaction.emoji, "❤️");

  const contacts = await get(S.inbound.contacts);
  assert.equal(contacts.contacts[0].name.formattedName, "Jane Doe");

  const quick = await get(S.inbound.button);
  assert.equal(quick.button.text, "Yes");

  const template = await get(S.outbound.template);
  assert.equal(template.template.name, "hello_world");

  const sent = await get(S.outbound.text);
  assert.equal(sent.text.body, `hello ${RUN}`);
  assert.equal(sent.context?.id, S.inbound.text);

  const byId = await get(S.outbound.imageById);
  assert.equal(byId.image.id, S.mediaId);

  const bsuid = await get(S.bsuidText);
  assert.equal(bsuid.text.body, `bsuid ${RUN}`);
  assert.equal(bsuid.fromUserId, B, "BSUID-only sender: MetaMessage.fromUserId");
  assert.ok(!bsuid.from, "BSUID-only sender has no phone number");
});

// ---------------------------------------------------------------------------------------------
// Message history: fields forms

const ourPage = async (fields) => {
  const page = await client.messages.listByConversation({
    phoneNumberId: PNID, conversationId: S.conversationA, limit: 100, ...(fields !== undefined ? { fields } : {}),
  });
  assert.ok(page.data.length > 0);
  return page.data;
};

test("messages.query without fields includes the kapso block", async () => {
  const page = await client.messages.query({ phoneNumberId: PNID, limit: 20 });
  assert.ok(page.data.length > 0);
  for (const m of page.data) {
    assert.ok(m.kapso, `${m.id}: no kapso block`);
    assert.ok(["inbound", "outbound"].includes(m.kapso.direction), `${m.id}: kapso.direction ${m.kapso.direction}`);
  }
});

test("fields=kapso() omits the kapso block", async () => {
  for (const m of await ourPage("kapso()")) {
    assert.ok(!("kapso" in m), `${m.id} still has kapso: ${JSON.stringify(m.kapso)}`);
    assert.ok(m.id && m.type && m.timestamp);
  }
});

test("fields=kapso(default) and buildKapsoFields() give all 15 Kapso fields", async () => {
  for (const fields of ["kapso(default)", buildKapsoFields()]) {
    for (const m of await ourPage(fields)) {
      const missing = ALL_KAPSO_KEYS.filter((k) => !(k in (m.kapso ?? {})));
      assert.deepEqual(missing, [], `${fields}: ${m.id} (${m.type}) lacks kapso keys`);
    }
  }
});

test("fields=kapso(direction,status) returns exactly that subset", async () => {
  const fields = buildKapsoFields(["direction", "status"]);
  assert.equal(fields, "kapso(direction,status)");
  for (const m of await ourPage(fields)) {
    assert.deepEqual(Object.keys(m.kapso ?? {}).sort(), ["direction", "status"], m.id);
  }
  const one = await client.messages.get({ phoneNumberId: PNID, messageId: S.inbound.text, fields: "kapso(contact_name,has_media)" });
  assert.deepEqual(Object.keys(one.kapso).sort(), ["contactName", "hasMedia"]);
  assert.equal(one.kapso.contactName, "Ada JS");
  const bare = await client.messages.get({ phoneNumberId: PNID, messageId: S.inbound.text, fields: "kapso()" });
  assert.ok(!("kapso" in bare));
});

// ---------------------------------------------------------------------------------------------
// Message history: paging and filters

test("messages.query pages with after/before and returns every seeded message exactly once", async () => {
  const pages = await walk((i) => client.messages.query(i), { phoneNumberId: PNID, limit: 7 });
  const seen = ids(flat(pages));
  assertEachOnce(seen, S.all, "walk limit=7");
  for (const p of pages) assert.ok(p.data.length <= 7);
  assert.ok(pages.length >= Math.ceil(S.all.length / 7), `only ${pages.length} pages`);

  const big = flat(await walk((i) => client.messages.query(i), { phoneNumberId: PNID, limit: 100 }));
  assert.deepEqual(seen, ids(big), "limit=7 and limit=100 walks must list the same messages in the same order");

  // Back from the last page with `before` gives the page before it.
  const last = pages.at(-1);
  const beforeCursor = last.paging.cursors.before;
  assert.equal(typeof beforeCursor, "string", "a later page must carry a before cursor");
  const back = await client.messages.query({ phoneNumberId: PNID, limit: 7, before: beforeCursor });
  assert.deepEqual(ids(back.data), ids(pages.at(-2).data), "before cursor of the last page");
  assert.equal(pages[0].paging.cursors.before ?? null, null, "the first page has no before cursor");
});

test("messages.listByConversation walks one conversation", async () => {
  assert.ok(S.conversationA, "no whatsapp_conversation_id on the seeded text");
  const pages = await walk((i) => client.messages.listByConversation(i), { phoneNumberId: PNID, conversationId: S.conversationA, limit: 5 });
  const got = flat(pages);
  assertEachOnce(ids(got), S.aMessages, "conversation walk");
  assert.equal(got.length, S.aMessages.length, "the conversation holds only A's messages");
  for (const m of got) assert.equal(m.kapso.whatsappConversationId, S.conversationA);
});

test("messages.query filters: direction, status, type, has_media, since/until", async () => {
  const inbound = flat(await walk((i) => client.messages.query(i), { phoneNumberId: PNID, conversationId: S.conversationA, direction: "inbound", limit: 100 }));
  assert.deepEqual(new Set(ids(inbound)), new Set(Object.values(S.inbound)));
  const outbound = flat(await walk((i) => client.messages.query(i), { phoneNumberId: PNID, conversationId: S.conversationA, direction: "outbound", limit: 100 }));
  assert.deepEqual(new Set(ids(outbound)), new Set(Object.values(S.outbound)));
  const read = flat(await walk((i) => client.messages.query(i), { phoneNumberId: PNID, conversationId: S.conversationA, status: "read", limit: 100 }));
  for (const m of read) assert.equal(m.kapso.status, "read");
  for (const [name, id] of Object.entries(S.outbound)) {
    if (FINAL_STATUS(name) === "read") assert.ok(ids(read).includes(id), `status=read lacks ${name} ${id}`);
  }
  const sent = flat(await walk((i) => client.messages.query(i), { phoneNumberId: PNID, conversationId: S.conversationA, status: "sent", limit: 100 }));
  assert.deepEqual(ids(sent), [S.outbound.reaction], "status=sent: only the reaction stays at sent");
  // `type` and `has_media` are not in the SDK's schema; it passes unknown keys through.
  const images = flat(await walk((i) => client.messages.query(i), { phoneNumberId: PNID, conversationId: S.conversationA, type: "image", limit: 100 }));
  assert.deepEqual(new Set(ids(images)), new Set([S.inbound.image, S.outbound.imageById, S.outbound.imageByLink]));
  const media = flat(await walk((i) => client.messages.query(i), { phoneNumberId: PNID, conversationId: S.conversationA, hasMedia: true, limit: 100 }));
  for (const m of media) assert.equal(m.kapso.hasMedia, true, `${m.id} (${m.type})`);
  assert.ok(ids(media).includes(S.inbound.audio));
  // JS users pass Date#toISOString(): milliseconds and a Z.
  const recent = flat(await walk((i) => client.messages.query(i), {
    phoneNumberId: PNID, conversationId: S.conversationA, limit: 100,
    since: new Date(Date.now() - 3600_000).toISOString(), until: new Date(Date.now() + 3600_000).toISOString(),
  }));
  assert.equal(recent.length, S.aMessages.length, "since/until around now");
  const future = await client.messages.query({ phoneNumberId: PNID, since: "2999-01-01T00:00:00Z" });
  assert.deepEqual(future.data, []);
  const past = await client.messages.query({ phoneNumberId: PNID, until: "2000-01-01T00:00:00Z" });
  assert.deepEqual(past.data, []);
});

test("messages.get of an unknown wamid throws GraphApiError", async () => {
  await assert.rejects(
    client.messages.get({ phoneNumberId: PNID, messageId: "wamid.DOESNOTEXIST" }),
    (e) => {
      assert.ok(e instanceof GraphApiError, String(e));
      assert.ok(e.httpStatus >= 400 && e.httpStatus < 500, `httpStatus ${e.httpStatus}`);
      assert.equal(typeof e.code, "number");
      assert.ok(e.message.length > 0);
      return true;
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Conversations

test("conversations.list filters by phone number and pages", async () => {
  const one = await client.conversations.list({ phoneNumberId: PNID, phoneNumber: A });
  assert.deepEqual(ids(one.data), [S.conversationA]);
  const conv = one.data[0];
  assert.equal(conv.phoneNumberId, PNID);
  assert.equal(conv.status, "active");
  assert.ok([A, `+${A}`].includes(conv.phoneNumber), `phoneNumber ${conv.phoneNumber}`);
  assert.equal(typeof conv.lastActiveAt, "string");

  const plus = await client.conversations.list({ phoneNumberId: PNID, phoneNumber: `+${A}` });
  assert.deepEqual(ids(plus.data), [S.conversationA], "phone_number=+E.164");
  const recent = await client.conversations.list({
    phoneNumberId: PNID, limit: 100, lastActiveSince: new Date(Date.now() - 3600_000).toISOString(),
  });
  assert.ok(ids(recent.data).includes(S.conversationA), "lastActiveSince an hour ago");

  const pages = await walk((i) => client.conversations.list(i), { phoneNumberId: PNID, limit: 2 });
  assertEachOnce(ids(flat(pages)), [S.conversationA, S.conversationC], "conversation walk");
});

test("conversations.list with kapso fields counts the conversation's messages", async () => {
  const page = await client.conversations.list({
    phoneNumberId: PNID, phoneNumber: A,
    fields: "kapso(contact_name,messages_count,last_message_id,last_message_type)",
  });
  const k = page.data[0].kapso;
  assert.ok(k, "no kapso block on the conversation");
  assert.equal(k.contactName, "Ada JS");
  assert.equal(k.messagesCount, S.aMessages.length);
  assert.ok(S.aMessages.includes(k.lastMessageId), `lastMessageId ${k.lastMessageId}`);
});

test("conversations.get (GET conversations/{id}) returns the bare record", async () => {
  const conv = await client.conversations.get({ conversationId: S.conversationA });
  assert.equal(conv.id, S.conversationA);
  assert.equal(conv.phoneNumberId, PNID);
  assert.equal(conv.status, "active");
});

test("conversations.updateStatus ends a conversation", async () => {
  assert.ok(S.conversationC);
  const r = await client.conversations.updateStatus({ conversationId: S.conversationC, status: "ended" });
  assert.deepEqual(r, { success: true });
  const conv = await client.conversations.get({ conversationId: S.conversationC });
  assert.equal(conv.status, "ended");
  const ended = flat(await walk((i) => client.conversations.list(i), { phoneNumberId: PNID, status: "ended", limit: 100 }));
  assert.ok(ids(ended).includes(S.conversationC));
  const active = flat(await walk((i) => client.conversations.list(i), { phoneNumberId: PNID, status: "active", limit: 100 }));
  await assert.rejects(client.conversations.updateStatus({ conversationId: S.conversationA, status: "resolved" }), (e) => {
    assert.ok(e instanceof GraphApiError, String(e));
    assert.equal(e.httpStatus, 400);
    assert.equal(e.category, "parameter");
    return true;
  });
  assert.ok(!ids(active).includes(S.conversationC));
  assert.ok(ids(active).includes(S.conversationA));
});

// ---------------------------------------------------------------------------------------------
// Contacts

test("contacts.list filters by wa_id and pages", async () => {
  const one = await client.contacts.list({ phoneNumberId: PNID, waId: A });
  assert.equal(one.data.length, 1);
  assert.equal(one.data[0].waId, A);
  assert.equal(one.data[0].profileName, "Ada JS");
  S.contactA = one.data[0].id;

  const pages = await walk((i) => client.contacts.list(i), { phoneNumberId: PNID, limit: 2 });
  const all = flat(pages);
  assertEachOnce(all.map((c) => c.waId ?? c.businessScopedUserId), [A, B, C], "contact walk");
  // Keys outside the SDK's schema pass through snake-cased: business_scoped_user_id.
  const byBsuid = await client.contacts.list({ phoneNumberId: PNID, businessScopedUserId: B });
  assert.deepEqual(byBsuid.data.map((c) => c.businessScopedUserId), [B]);
  const noCustomer = flat(await walk((i) => client.contacts.list(i), { phoneNumberId: PNID, hasCustomer: false, limit: 100 }));
  assert.ok(ids(noCustomer).includes(S.contactA));
});

test("contacts.get by wa_id and by BSUID", async () => {
  const a = await client.contacts.get({ phoneNumberId: PNID, waId: A });
  assert.equal(a.waId, A);
  assert.equal(a.profileName, "Ada JS");
  const b = await client.contacts.get({ phoneNumberId: PNID, waId: B });
  assert.equal(b.businessScopedUserId, B);
  assert.equal(b.waId ?? null, null, "a BSUID-only contact has a null wa_id");
  assert.equal(b.profileName, "Bo JS");
});

test("contacts.update (PATCH {pnid}/contacts/{wa_id}) sets display name and metadata", async () => {
  const r = await client.contacts.update({ phoneNumberId: PNID, waId: A, displayName: "Ada (VIP)", metadata: { tier: "gold" } });
  assert.deepEqual(r, { success: true });
  const a = await client.contacts.get({ phoneNumberId: PNID, waId: A });
  assert.equal(a.displayName, "Ada (VIP)");
  assert.equal(a.metadata?.tier, "gold");
  assert.equal(a.profileName, "Ada JS");
  const rb = await client.contacts.update({ phoneNumberId: PNID, waId: B, displayName: "Bo (BSUID)" });
  assert.deepEqual(rb, { success: true });
  assert.equal((await client.contacts.get({ phoneNumberId: PNID, waId: B })).displayName, "Bo (BSUID)");
});

// ---------------------------------------------------------------------------------------------
// Calls

test("calls.list (GET {pnid}/calls) lists and pages the seeded calls", async () => {
  const pages = await walk((i) => client.calls.list(i), { phoneNumberId: PNID, limit: 1 });
  const all = flat(pages);
  const mine = all.filter((c) => [CALL_A, CALL_C].includes(c.callId ?? c.id));
  assert.equal(mine.length, 2, `seeded calls in the walk: ${JSON.stringify(all)}`);
  assertEachOnce(ids(all), ids(mine), "call walk");
});

test("calls.get (list with call_id, limit 1) returns the completed call", async () => {
  const call = await client.calls.get({ phoneNumberId: PNID, callId: CALL_A });
  assert.ok(call, "calls.get returned nothing");
  assert.ok([call.id, call.callId].includes(CALL_A), JSON.stringify(call));
  assert.equal(call.direction?.toLowerCase(), "inbound");
  assert.equal(call.status?.toLowerCase(), "completed");
  assert.equal(call.durationSeconds, 42);
  assert.equal(typeof call.startedAt, "string");
  assert.equal(typeof call.endedAt, "string");
  const failed = await client.calls.get({ phoneNumberId: PNID, callId: CALL_C });
  assert.equal(failed.status?.toLowerCase(), "failed");
});

test("calls.get(list[0].id): the listed id addresses the call as Meta's does", async () => {
  const listed = flat(await walk((i) => client.calls.list(i), { phoneNumberId: PNID, limit: 1 }))
    .find((c) => c.callId === CALL_A);
  assert.ok(listed && listed.id !== CALL_A, JSON.stringify(listed));
  const call = await client.calls.get({ phoneNumberId: PNID, callId: listed.id });
  assert.ok(call, "calls.get by the listed id returned nothing");
  assert.equal(call.id, listed.id);
  assert.equal(call.callId, CALL_A);
  assert.equal(call.durationSeconds, 42);
});

// ---------------------------------------------------------------------------------------------
// Meta passthrough

test("phoneNumbers.businessProfile.get", async () => {
  const r = await client.phoneNumbers.businessProfile.get({ phoneNumberId: PNID });
  assert.ok(Array.isArray(r.data) && r.data.length === 1, JSON.stringify(r));
  assert.equal(r.data[0].messagingProduct, "whatsapp");
});

test("templates.list includes hello_world", async () => {
  const r = await client.templates.list({ businessAccountId: WABA, limit: 100 });
  assert.ok(Array.isArray(r.data));
  const hello = r.data.find((t) => t.name === "hello_world");
  assert.ok(hello, `no hello_world in ${JSON.stringify(r.data.map((t) => t.name))}`);
  assert.equal(typeof hello.id, "string");
  assert.ok(r.paging);
});

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const text = (bytes) => Buffer.from(bytes).toString("utf8").slice(0, 300);

test("media.upload and media.get return the uploaded object's metadata", async () => {
  assert.equal(typeof S.mediaId, "string");
  assert.ok(S.mediaId.length > 0);
  const meta = await client.media.get({ mediaId: S.mediaId, phoneNumberId: PNID });
  S.mediaMeta = meta;
  assert.equal(meta.id, S.mediaId);
  assert.equal(meta.messagingProduct, "whatsapp");
  assert.equal(meta.mimeType, "image/png");
  assert.equal(typeof meta.url, "string");
  assert.equal(typeof meta.sha256, "string");
  assert.equal(Number(meta.fileSize), PNG.length);
});

test("media.download with auth: 'always' returns the uploaded bytes", async () => {
  const bytes = await client.media.download({ mediaId: S.mediaId, phoneNumberId: PNID, auth: "always" });
  assert.equal(hex(bytes), hex(PNG), `got: ${text(bytes)}`);
});

test("media.download with the default auth ('auto': no API key for non-kapso.ai hosts) returns the bytes", async () => {
  const bytes = await client.media.download({ mediaId: S.mediaId, phoneNumberId: PNID });
  assert.equal(
    hex(bytes), hex(PNG),
    `downloadUrl=${S.mediaMeta?.downloadUrl} url=${S.mediaMeta?.url} answered without X-API-Key: ${text(bytes)}`,
  );
});

test("templates.get by id", async () => {
  const list = await client.templates.list({ businessAccountId: WABA, name: "hello_world" });
  const hello = list.data.find((t) => t.name === "hello_world");
  assert.ok(hello);
  const got = await client.templates.get({ businessAccountId: WABA, templateId: hello.id });
  assert.equal(got.id, hello.id);
  assert.equal(got.name, "hello_world");
});

test("messages.markRead with a typing indicator", async () => {
  const id = await inbound({ from: C, profile_name: "Cy JS", type: "text", text: { body: "read me" } });
  const r = await client.messages.markRead({ phoneNumberId: PNID, messageId: id, typingIndicator: { type: "text" } });
  assert.deepEqual(r, { success: true });
});

test("any Graph version segment works (v21.0 client)", async () => {
  const old = new WhatsAppClient({ baseUrl: BASE_URL, kapsoApiKey: API_KEY, graphVersion: "v21.0" });
  const page = await old.conversations.list({ phoneNumberId: PNID, phoneNumber: A });
  assert.deepEqual(ids(page.data), [S.conversationA]);
});

test("a wrong API key gives GraphApiError 401 (authorization)", async () => {
  const bad = new WhatsAppClient({ baseUrl: BASE_URL, kapsoApiKey: "wag_not-a-real-key" });
  await assert.rejects(bad.messages.query({ phoneNumberId: PNID }), (e) => {
    assert.ok(e instanceof GraphApiError, String(e));
    assert.equal(e.httpStatus, 401);
    assert.equal(e.category, "authorization");
    return true;
  });
});

test("messages.sendText to a BSUID (recipient) is stored as outbound", async () => {
  const r = await client.messages.sendText({ phoneNumberId: PNID, recipient: B, body: `to bsuid ${RUN}` });
  const id = r.messages[0].id;
  let m;
  for (let i = 0; i < 40 && !m; i++) {
    try { m = await client.messages.get({ phoneNumberId: PNID, messageId: id }); } catch { await sleep(250); }
  }
  assert.ok(m, "the send to a BSUID was never stored");
  assert.equal(m.kapso.direction, "outbound");
  assert.equal(m.text.body, `to bsuid ${RUN}`);
});
