"""Attachments over HTTP and the JSON socket, against a real Daphne and scripted models:
upload, checks by content, storage, the log, what each provider is given, the working
directory, and files that must be refused without leaving anything behind."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.chat.images import GPS_IFD, bomb_png, image_of, jpeg_with_gps, png_bytes
from tests.chat.live import COMPLETIONS, MODEL, ndjson, start_stack
from tests.chat.providers.sse_server import openai_text_reply
from tests.servers import manage

SEEING = "seeing/eyes"  # a model with vision (config: vision = true)
VISION_CREDENTIAL = """
[[credentials]]
name = "seeing"
kind = "openai"
base_url = "MODEL_URL/v1"
api_key_env = "SCRIPTED_API_KEY"
models = ["eyes"]
vision = true
"""
MAX_BYTES = 200_000  # small limits, so a "huge" upload is quick to make


@pytest.fixture(scope="module")
def stack():
    env = {"DISPATCH_ATTACHMENT_MAX_BYTES": str(MAX_BYTES), "DISPATCH_ATTACHMENTS_PER_MESSAGE": "3"}
    yield from start_stack(env, config_extra=VISION_CREDENTIAL)


def new_id() -> str:
    return "a-" + uuid.uuid4().hex[:12]


def upload(client, name: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.post("/attachments", files={"file": (name, data, content_type)})


def uploaded(client, name: str, data: bytes, content_type: str = "image/png") -> dict:
    response = upload(client, name, data, content_type)
    assert response.status_code == 201, response.text
    return response.json()


def chat(client, **body) -> list[dict]:
    response = client.post("/chat", json=body)
    assert response.status_code == 200, response.text
    return ndjson(response)


def history(client, conversation_id: str) -> list[dict]:
    response = client.get(f"/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    return response.json()["chunks"]


def stored_files(stack) -> list[Path]:
    root = Path(stack.env["DISPATCH_VAR_DIR"]) / "attachments"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def attachment_rows(stack) -> int:
    code = "from chat.models import Attachment; print(Attachment.objects.count())"
    return int(manage(["shell", "-c", code], **stack.env).strip().splitlines()[-1])


def conversation_page(stack, conversation_id: str) -> str:
    """The web app's page of the conversation, as alice's browser gets it."""
    code = (
        "from django.test import Client; from django.contrib.auth.models import User; "
        "c = Client(); c.force_login(User.objects.get(username='alice')); "
        "print(c.cookies['sessionid'].value)"
    )
    cookie = manage(["shell", "-c", code], **stack.env).strip().splitlines()[-1]
    response = httpx.get(f"{stack.url}/c/{conversation_id}", cookies={"sessionid": cookie})
    assert response.status_code == 200
    return response.text


def last_request_messages(stack) -> list[dict]:
    return stack.scripted.requests[-1].body["messages"]


# ---------------------------------------------------------------- upload and download


def test_an_uploaded_png_is_stored_re_encoded_and_only_its_owner_reads_it(stack):
    with stack.client() as alice, stack.client("bob") as bob:
        attachment = uploaded(alice, "chart.png", png_bytes(40, 30))
        assert attachment["id"].startswith("att_")
        assert {k: attachment[k] for k in ("kind", "name", "mediaType", "width", "height")} == {
            "kind": "image",
            "name": "chart.png",
            "mediaType": "image/png",
            "width": 40,
            "height": 30,
        }
        assert attachment["conversationId"] is None and attachment["sentAt"] is None

        meta = alice.get(f"/attachments/{attachment['id']}")
        assert meta.status_code == 200 and meta.json() == attachment
        content = alice.get(f"/attachments/{attachment['id']}/content")
        assert content.status_code == 200
        assert content.headers["content-type"] == "image/png"
        assert content.headers["x-content-type-options"] == "nosniff"
        assert content.headers["content-security-policy"].endswith("sandbox")
        assert content.headers["content-disposition"] == 'inline; filename="chart.png"'
        assert len(content.content) == attachment["size"]
        assert image_of(content.content).size == (40, 30)

        for path in ("", "/content"):
            response = bob.get(f"/attachments/{attachment['id']}{path}")
            assert response.status_code == 404
            assert response.json() == {"error": f"attachment not found: {attachment['id']}"}
        assert bob.delete(f"/attachments/{attachment['id']}").status_code == 404
        assert alice.get(f"/attachments/{attachment['id']}").status_code == 200


def test_a_photo_loses_its_gps_position_and_comment_and_is_turned_upright(stack):
    original = jpeg_with_gps(64, 48)
    assert GPS_IFD in image_of(original).getexif() and b"taken at home" in original
    with stack.client() as alice:
        attachment = uploaded(alice, "IMG_0001.JPG", original, "image/jpeg")
        stored = alice.get(f"/attachments/{attachment['id']}/content").content

    assert attachment["mediaType"] == "image/jpeg"
    assert (attachment["width"], attachment["height"]) == (48, 64)  # the orientation applied
    image = image_of(stored)
    assert image.size == (48, 64)
    assert not image.getexif() and "exif" not in image.info
    assert b"taken at home" not in stored and b"Exif" not in stored


def test_a_non_image_file_is_kept_byte_for_byte_and_downloads_as_a_file(stack):
    script = b"<?php echo 'hi'; ?>\n"
    with stack.client() as alice:
        attachment = uploaded(alice, "../../etc/run.php", script, "application/x-php")
        content = alice.get(f"/attachments/{attachment['id']}/content")

    assert attachment["kind"] == "file" and attachment["name"] == "run.php"
    assert content.content == script
    assert content.headers["content-type"] == "application/octet-stream"
    assert content.headers["content-disposition"] == 'attachment; filename="run.php"'


HOSTILE = [
    # (name, content, declared type, status, the whole error)
    (
        "shell.png",
        b"<?php system($_GET['c']); ?>",
        "image/png",
        400,
        "file: shell.png is not a PNG, JPEG, GIF, WebP or BMP image (its content was checked, "
        "not its name)",
    ),
    (
        "bomb.png",
        bomb_png(),
        "image/png",
        400,
        "file: bomb.png is too large an image: at most 40,000,000 pixels",
    ),
    (
        "wide.png",
        png_bytes(9000, 5000),
        "image/png",
        400,
        "file: wide.png is too large an image: 9,000×5,000 pixels; at most 40,000,000 pixels",
    ),
    ("empty.txt", b"", "text/plain", 400, "file: empty.txt is empty (0 bytes)"),
    (
        "big.bin",
        b"x" * (MAX_BYTES + 1),
        "application/octet-stream",
        413,
        "file too large: big.bin is 200,001 bytes; at most 195 KiB (200,000 bytes) per file",
    ),
    (
        "huge.bin",
        bytes(8_000_000),  # forty times the limit
        "application/octet-stream",
        413,
        "file too large: huge.bin is 8,000,000 bytes; at most 195 KiB (200,000 bytes) per file",
    ),
    (
        "cut.png",
        png_bytes(300, 300)[:120],
        "image/png",
        400,
        "file: cut.png is a damaged PNG image and cannot be read",
    ),
]


def test_hostile_files_are_refused_and_leave_nothing_behind(stack):
    files_before, rows_before = stored_files(stack), attachment_rows(stack)
    with stack.client() as alice:
        for name, data, content_type, status, message in HOSTILE:
            response = upload(alice, name, data, content_type)
            assert (response.status_code, response.json()) == (status, {"error": message}), name
            assert stored_files(stack) == files_before, name
    assert attachment_rows(stack) == rows_before


def test_a_request_without_a_file_is_a_400(stack):
    with stack.client() as alice:
        response = alice.post("/attachments", data={"other": "x"})
    assert response.status_code == 400
    assert response.json() == {"error": "file: Field required"}


def test_a_malformed_upload_gets_the_apis_json_400(stack):
    """Daphne hands the body over unparsed (chat/overrides/daphne.py): the API answers."""
    cases = [
        (b"--b--\r\n", "multipart/form-data; boundary=b", "file: Field required"),
        (b"garbage", "multipart/form-data", "malformed multipart body"),
    ]
    for body, content_type, message in cases:
        response = httpx.post(
            stack.url + "/attachments",
            content=body,
            headers={**stack.headers(), "Content-Type": content_type},
        )
        assert (response.status_code, response.json()) == (400, {"error": message})


def test_an_unsent_attachment_can_be_removed_a_sent_one_cannot(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("ok"))
    with stack.client() as alice:
        gone = uploaded(alice, "a.png", png_bytes())
        kept = uploaded(alice, "b.png", png_bytes())
        count = len(stored_files(stack))
        assert alice.delete(f"/attachments/{gone['id']}").json() == {
            "id": gone["id"],
            "deleted": True,
        }
        assert alice.get(f"/attachments/{gone['id']}").status_code == 404
        assert len(stored_files(stack)) == count - 1

        chat(alice, message="see", attachments=[kept["id"]])
        refused = alice.delete(f"/attachments/{kept['id']}")
        assert refused.status_code == 409
        assert refused.json() == {
            "error": f"attachment {kept['id']} was sent with a message: it stays with its "
            "conversation"
        }


# ---------------------------------------------------------------- sending


def test_an_image_reaches_a_vision_model_as_an_image_part_and_the_log_as_an_image_chunk(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("A red square."))
    conversation_id = new_id()
    with stack.client() as alice:
        image = uploaded(alice, "square.png", png_bytes(40, 30))
        stored = alice.get(f"/attachments/{image['id']}/content").content
        events = chat(
            alice,
            conversationId=conversation_id,
            message="What is it?",
            model=SEEING,
            attachments=[image["id"]],
        )
        chunks = history(alice, conversation_id)
        sent = alice.get(f"/attachments/{image['id']}").json()

    chunk = {
        "type": "image",
        "attachmentId": image["id"],
        "name": "square.png",
        "mediaType": "image/png",
        "size": image["size"],
        "width": 40,
        "height": 30,
    }
    assert events[0] == {
        "type": "user-message",
        "conversationId": conversation_id,
        "turnId": events[0]["turnId"],
        "text": "What is it?",
        "attachments": [chunk],
    }
    assert [(c["seq"], c["role"], c["chunk"]) for c in chunks[:2]] == [
        (1, "user", {"type": "text", "text": "What is it?"}),
        (2, "user", chunk),  # described, never the bytes
    ]
    request = stack.scripted.requests[-1].body
    assert request["model"] == "eyes"
    parts = request["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is it?"}
    assert parts[1]["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert parts[1]["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(parts[1]["image_url"]["url"][len(prefix) :]) == stored
    assert sent["conversationId"] == conversation_id and sent["sentAt"]


def test_a_model_without_vision_gets_a_placeholder_naming_the_image(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("I cannot see it."))
    with stack.client() as alice:
        image = uploaded(alice, "cat.png", png_bytes(64, 64))
        chat(alice, message="", model=MODEL, attachments=[image["id"]])  # an image alone

    assert last_request_messages(stack)[-1] == {
        "role": "user",
        "content": "[Image: cat.png, 64×64. You cannot see images, so only its name and size "
        "are given.]",
    }


def test_a_file_is_saved_into_the_working_directory_under_a_new_name_when_taken(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("Read it."), openai_text_reply("Again."))
    workspace = stack.workspace() / "files"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "notes.csv").write_text("mine,do not touch\n")
    conversation_id = new_id()
    with stack.client() as alice:
        first = uploaded(alice, "notes.csv", b"a,b\n1,2\n", "text/csv")
        chat(
            alice, conversationId=conversation_id, message="Sum it", cwd="files",
            attachments=[first["id"]],
        )  # fmt: skip
        note = last_request_messages(stack)[-1]["content"]
        second = uploaded(alice, "notes.csv", b"c\n3\n", "text/csv")
        chat(alice, conversationId=conversation_id, message="And this", attachments=[second["id"]])
        chunks = history(alice, conversation_id)

    assert (workspace / "notes.csv").read_text() == "mine,do not touch\n"  # never overwritten
    assert (workspace / "notes-1.csv").read_bytes() == b"a,b\n1,2\n"
    assert (workspace / "notes-2.csv").read_bytes() == b"c\n3\n"
    assert note == (
        "Sum it\n\n[Attached file: notes.csv (8 bytes, text/csv), saved as notes-1.csv in the "
        "working directory]"
    )
    files = [c["chunk"] for c in chunks if c["chunk"]["type"] == "file"]
    assert [(f["name"], f["path"]) for f in files] == [
        ("notes.csv", "notes-1.csv"),
        ("notes.csv", "notes-2.csv"),
    ]


def test_refused_sends_persist_nothing(stack):
    conversation_id = new_id()
    with stack.client() as alice, stack.client("bob") as bob:
        bobs = uploaded(bob, "bob.png", png_bytes())
        mine = [uploaded(alice, f"{n}.png", png_bytes())["id"] for n in range(4)]
        cases = [
            ([bobs["id"]], 404, f"attachment not found: {bobs['id']}"),
            (["att_doesnotexist"], 404, "attachment not found: att_doesnotexist"),
            (mine, 400, "attachments: at most 3 per message (4 given)"),
            ([mine[0], mine[0]], 400, "attachments: an attachment is listed twice"),
            (["../x"], 400, "attachments.0: String should match pattern '^[A-Za-z0-9_-]{1,64}$'"),
            ("att_x", 400, "attachments: Input should be a valid list"),
        ]
        for ids, status, message in cases:
            response = alice.post(
                "/chat",
                json={"conversationId": conversation_id, "message": "hi", "attachments": ids},
            )
            assert (response.status_code, response.json()) == (status, {"error": message}), ids
        empty = alice.post("/chat", json={"conversationId": conversation_id, "message": ""})
        assert empty.status_code == 400
        assert empty.json() == {"error": "message: String should have at least 1 character"}
        assert alice.get(f"/conversations/{conversation_id}").json()["chunks"] == []
        assert alice.get(f"/attachments/{mine[0]}").json()["conversationId"] is None
        assert bob.get(f"/attachments/{bobs['id']}").json()["conversationId"] is None


def test_an_attachment_is_sent_once(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("ok"))
    with stack.client() as alice:
        image = uploaded(alice, "once.png", png_bytes())
        chat(alice, message="one", attachments=[image["id"]])
        again = alice.post("/chat", json={"message": "two", "attachments": [image["id"]]})
    assert again.status_code == 400
    assert again.json() == {"error": f"attachments: {image['id']} was already sent"}


def test_chat_send_on_the_socket_carries_attachments_and_refuses_someone_elses(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("Seen."))
    conversation_id = new_id()
    with stack.client() as alice, stack.client("bob") as bob:
        image = uploaded(alice, "sock.png", png_bytes(10, 10))
        bobs = uploaded(bob, "bobs.png", png_bytes())
    with connect(stack.ws_url()) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "catalog"
        socket.send(json.dumps({
            "type": "chat.send", "conversationId": conversation_id, "message": "x",
            "attachments": [bobs["id"]],
        }))  # fmt: skip
        assert json.loads(socket.recv(timeout=10)) == {
            "type": "chat.error",
            "conversationId": conversation_id,
            "message": f"attachment not found: {bobs['id']}",
        }
        socket.send(json.dumps({
            "type": "chat.send", "conversationId": conversation_id, "message": "Look",
            "model": SEEING, "attachments": [image["id"]],
        }))  # fmt: skip
        events = []
        while not events or events[-1]["type"] != "turn-sealed":
            frame = json.loads(socket.recv(timeout=10))
            if frame["type"] == "chat.delta":
                events.append(frame["event"])
    assert events[0]["attachments"][0]["attachmentId"] == image["id"]
    assert last_request_messages(stack)[-1]["content"][1]["type"] == "image_url"
    with stack.client() as alice:
        assert history(alice, conversation_id)[1]["chunk"]["type"] == "image"


def test_models_say_which_see_images(stack):
    with stack.client() as alice:
        info = alice.get("/models").json()["modelInfo"]
    assert info[SEEING] == {"contextWindow": None, "vision": True}
    assert info[MODEL] == {"contextWindow": 8192, "vision": False}


def test_a_conversation_page_shows_thumbnails_and_file_chips(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("ok"))
    conversation_id = new_id()
    with stack.client() as alice:
        image = uploaded(alice, "pic.png", png_bytes(20, 10))
        file = uploaded(alice, "data.json", b"{}", "application/json")
        chat(
            alice, conversationId=conversation_id, message="both",
            attachments=[image["id"], file["id"]],
        )  # fmt: skip
    page = conversation_page(stack, conversation_id)
    assert (
        f'<img src="/attachments/{image["id"]}/content" alt="pic.png" width="20" height="10"'
        in page
    )
    assert f'href="/attachments/{file["id"]}/content" download="data.json"' in page
    assert '<span class="chip-size">2 bytes</span>' in page


# ---------------------------------------------------------------- descriptions


@pytest.fixture(scope="module")
def describing():
    """A stack whose ``[runtime] vision_model`` describes images for models without vision."""
    yield from start_stack(
        config_extra=VISION_CREDENTIAL, runtime_extra=f'vision_model = "{SEEING}"'
    )


def test_a_vision_model_describes_an_image_once_for_models_without_vision(describing):
    describing.scripted.script(
        COMPLETIONS,
        openai_text_reply("A red square on white."),  # the description
        openai_text_reply("It is red."),  # the answer
        openai_text_reply("Still red."),  # the next turn: the description is kept
    )
    conversation_id = new_id()
    with describing.client() as alice:
        image = uploaded(alice, "sq.png", png_bytes(30, 30))
        chat(alice, conversationId=conversation_id, message="Colour?", attachments=[image["id"]])
        chat(alice, conversationId=conversation_id, message="Sure?")

    describe, answer, again = (r.body for r in describing.scripted.requests[-3:])
    assert describe["model"] == "eyes"
    assert describe["messages"][0]["content"][1]["type"] == "image_url"
    expected = (
        "[Image: sq.png, 30×30. You cannot see images; seeing/eyes described it: "
        "A red square on white.]"
    )
    assert answer["model"] == "test-model"
    assert answer["messages"][-1]["content"] == "Colour?\n\n" + expected
    assert again["messages"][0]["content"] == "Colour?\n\n" + expected
    page = conversation_page(describing, conversation_id)  # shown to the user as such
    assert "<summary>Described by seeing/eyes for models without vision</summary>" in page
    assert "<p>A red square on white.</p>" in page
