"""The emulators themselves: the wire rules they enforce, the rate limiter, the command line.

Raw HTTP (urllib) rather than SDKs, so each rule is checked even where our providers never break it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.providers.images import jpeg, png, webp
from mrl_retrievers.emulators import GeminiServer, JinaServer, OpenAIServer, RateLimiter, VoyageServer
from tests.providers.servers.fixtures import KEY

ROOT = Path(__file__).resolve().parents[3]


def post(url: str, body: object, headers: dict[str, str]) -> tuple[int, dict, object]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, dict(err.headers), json.loads(raw) if raw.startswith(b"{") else raw


BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def openai():
    with OpenAIServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def gemini():
    with GeminiServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def voyage():
    with VoyageServer(api_key=KEY) as server:
        yield server


@pytest.mark.parametrize("body, status, needle", [
    ({"model": "text-embedding-ada-002", "input": ["a"], "dimensions": 8}, 400,
     "This model does not support specifying dimensions."),
    ({"model": "text-embedding-3-small", "input": ["a", ""]}, 400, "'$.input' is invalid"),
    ({"model": "text-embedding-3-small", "input": ["a"] * 2049}, 400, "max number of inputs is 2048"),
    ({"model": "text-embedding-3-small", "input": ["a"], "dimensions": 1537}, 400, "less than or equal to 1536"),
    ({"model": "text-embedding-3-small", "input": ["word " * 9000]}, 400, "maximum context length is 8192"),
    ({"model": "nope", "input": ["a"]}, 404, "does not exist"),
])
def test_openai_rules(openai, body, status, needle):
    code, _, answer = post(f"{openai.base_url}/embeddings", body, BEARER)
    assert code == status and needle in answer["error"]["message"]
    assert set(answer["error"]) == {"message", "type", "param", "code"}


def test_openai_base64_is_little_endian_float32_unit(openai):
    body = {"model": "text-embedding-3-small", "input": "hi", "dimensions": 64, "encoding_format": "base64"}
    code, headers, answer = post(f"{openai.base_url}/embeddings", body, BEARER)
    vec = np.frombuffer(base64.b64decode(answer["data"][0]["embedding"]), dtype="<f4")
    assert code == 200 and vec.shape == (64,) and abs(np.linalg.norm(vec) - 1) < 1e-6
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] >= 1
    assert answer["object"] == "list" and answer["data"][0]["index"] == 0


def test_openai_auth_errors(openai):
    code, _, answer = post(f"{openai.base_url}/embeddings", {"model": "m", "input": ["a"]}, {})
    assert code == 401 and "didn't provide an API key" in answer["error"]["message"]
    code, _, answer = post(f"{openai.base_url}/embeddings", {"model": "m", "input": ["a"]},
                           {"Authorization": "Bearer sk-wrong-key-1234"})
    assert code == 401 and answer["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-key-1234" not in answer["error"]["message"]  # masked like the real API


def test_gemini_rules(gemini):
    url = f"{gemini.base_url}/v1beta/models/gemini-embedding-001:batchEmbedContents"
    item = {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}}
    hdr = {"x-goog-api-key": KEY}
    code, _, answer = post(url, {"requests": [item] * 101}, hdr)
    assert code == 400 and "at most 100" in answer["error"]["message"]
    code, _, answer = post(url, {"requests": [{**item, "model": "models/other"}]}, hdr)
    assert code == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    code, _, answer = post(url, {"requests": [{**item, "outputDimensionality": 64}]}, hdr)
    assert code == 400
    code, _, answer = post(url, {"requests": [{**item, "outputDimensionality": 3072}]}, hdr)
    assert code == 200 and abs(np.linalg.norm(answer["embeddings"][0]["values"]) - 1) < 1e-6
    code, _, answer = post(url, {"requests": [{**item, "outputDimensionality": 768}]}, hdr)
    assert code == 200 and np.linalg.norm(answer["embeddings"][0]["values"]) < 0.95  # 001: not unit
    code, _, answer = post(url, {"requests": [item]}, {})
    assert code == 403 and answer["error"]["status"] == "PERMISSION_DENIED"


def test_voyage_rules(voyage):
    url = f"{voyage.base_url}/embeddings"
    code, _, answer = post(url, {"input": ["a"], "model": "voyage-4", "output_dimension": 300}, BEARER)
    assert code == 400 and "output_dimension" in answer["detail"]
    code, _, answer = post(url, {"input": ["a"] * 1001, "model": "voyage-4"}, BEARER)
    assert code == 400 and "1000" in answer["detail"]
    code, _, answer = post(url, {"input": ["a"], "model": "voyage-3", "output_dimension": 512}, BEARER)
    assert code == 400
    code, _, answer = post(url, {"input": ["a"], "model": "voyage-4", "output_dtype": "int8"}, BEARER)
    assert code == 200 and all(-128 <= x <= 127 for x in answer["data"][0]["embedding"])
    code, _, answer = post(url, {"input": ["a"], "model": "voyage-4"}, {"Authorization": "Bearer nope"})
    assert code == 401 and answer == {"detail": "Provided API key is invalid."}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_voyage_multimodal_rules(voyage):
    url = f"{voyage.base_url}/multimodalembeddings"
    image = {"type": "image_base64", "image_base64": "data:image/png;base64," + _b64(png())}
    body = {"inputs": [{"content": [{"type": "text", "text": "a"}, image]}], "model": "voyage-multimodal-3.5"}
    code, _, answer = post(url, body, BEARER)
    assert code == 200 and set(answer["usage"]) == {"text_tokens", "image_pixels", "video_pixels", "total_tokens"}
    assert answer["usage"]["image_pixels"] == 8 * 6 and answer["usage"]["total_tokens"] == 1 + 90  # 50k px / 560
    refused = [
        ({**body, "model": "voyage-4"}, "not supported by the multimodal"),
        ({**body, "inputs": [{"content": [{**image, "extra": 1}]}]}, "exactly the keys"),
        ({**body, "inputs": [{"content": [{"type": "image_base64", "image_base64": "data:image/png;base64,"
                                                                                   + _b64(jpeg())}]}]}, "says image/png"),
        ({**body, "inputs": [{"content": [{"type": "image_base64", "image_base64": "data:image/png;base64,"
                                                                                   + _b64(b"nope")}]}]}, "cannot identify"),
        ({**body, "inputs": [{"content": [{"type": "image_base64", "image_base64": _b64(png())}]}]}, "data URL"),
        ({**body, "inputs": [{"content": []}]}, "non-empty list"),
        ({**body, "inputs": [{"content": [image]}] * 1001}, "1000"),
        ({**body, "output_dimension": 300}, "output_dimension"),
    ]
    for bad, needle in refused:
        code, _, answer = post(url, bad, BEARER)
        assert code == 400 and needle in answer["detail"], (needle, answer)
    code, _, answer = post(f"{voyage.base_url}/embeddings", {"input": ["a"], "model": "voyage-multimodal-3.5"}, BEARER)
    assert code == 400 and "multimodal embeddings endpoint" in answer["detail"]


def test_gemini_image_rules(gemini):
    url = f"{gemini.base_url}/v1beta/models/gemini-embedding-2:batchEmbedContents"
    hdr = {"x-goog-api-key": KEY}

    def item(*parts, model="gemini-embedding-2"):
        return {"model": f"models/{model}", "content": {"parts": list(parts)}}

    camel = {"inlineData": {"mimeType": "image/jpeg", "data": _b64(jpeg())}}
    snake = {"inline_data": {"mime_type": "image/png", "data": _b64(png())}}
    code, _, answer = post(url, {"requests": [item({"text": "a"}, camel), item(snake)]}, hdr)
    assert code == 200 and len(answer["embeddings"]) == 2
    refused = [
        item({"inline_data": {"mime_type": "image/webp", "data": _b64(webp())}}),
        item({"inline_data": {"mime_type": "image/png", "data": _b64(jpeg())}}),
        item({"inline_data": {"mime_type": "image/png", "data": "!!"}}),
        item(*[snake] * 7),
        item({"file_data": {"file_uri": "https://example.com/a.png", "mime_type": "image/png"}}),
    ]
    for bad in refused:
        code, _, answer = post(url, {"requests": [bad]}, hdr)
        assert code == 400 and answer["error"]["status"] == "INVALID_ARGUMENT", bad
    old = f"{gemini.base_url}/v1beta/models/gemini-embedding-001:batchEmbedContents"
    code, _, answer = post(old, {"requests": [item(snake, model="gemini-embedding-001")]}, hdr)
    assert code == 400 and "does not support multimodal input" in answer["error"]["message"]


def test_jina_rules():
    with JinaServer(api_key=KEY) as jina:
        url = f"{jina.base_url}/embeddings"
        body = {"model": "jina-embeddings-v4", "input": [{"text": "a"}, {"image": _b64(png())}], "dimensions": 256}
        code, _, answer = post(url, body, BEARER)
        assert code == 200 and [d["index"] for d in answer["data"]] == [0, 1]
        assert len(answer["data"][0]["embedding"]) == 256 and set(answer["usage"]) == {"total_tokens", "prompt_tokens"}
        assert abs(np.linalg.norm(answer["data"][0]["embedding"]) - 1) > 1e-3  # truncated, not renormalized
        code, _, answer = post(url, {**body, "normalized": True, "embedding_type": "base64"}, BEARER)
        vec = np.frombuffer(base64.b64decode(answer["data"][0]["embedding"]), dtype="<f4")
        assert code == 200 and vec.shape == (256,) and abs(np.linalg.norm(vec) - 1) < 1e-5
        refused = [
            ({**body, "model": "jina-embeddings-v3", "dimensions": 64}, 400, "does not support image input"),
            ({**body, "dimensions": 64}, 400, "between 128 and 2048"),
            ({**body, "task": "retrieval.document"}, 400, "Invalid task"),
            ({**body, "input": [{"image": _b64(b"not an image")}]}, 400, "Invalid image"),
            ({**body, "input": [{"text": "a", "image": _b64(png())}]}, 422, None),
            ({**body, "input": [{"text": "word " * 40_000}]}, 400, "truncate"),
            ({**body, "dimensions": "256"}, 422, None),
        ]
        for bad, status, needle in refused:
            code, _, answer = post(url, bad, BEARER)
            assert code == status and (needle is None or needle in answer["detail"]), (needle, answer)
        code, _, answer = post(url, {**body, "input": [{"text": "word " * 40_000}], "truncate": True}, BEARER)
        assert code == 200
        code, _, answer = post(url, body, {"Authorization": "Bearer nope"})
        assert code == 401 and "Invalid API key" in answer["detail"]


def test_rate_limiter_window():
    now = [0.0]
    limiter = RateLimiter(rpm=2, tpm=100, clock=lambda: now[0])
    assert limiter.admit(10) is None and limiter.admit(10) is None
    assert limiter.admit(10) == pytest.approx(60.0)  # third request in the same minute
    now[0] = 30.0
    assert limiter.admit(10) == pytest.approx(30.0)
    now[0] = 61.0
    assert limiter.admit(95) is None
    now[0] = 62.0
    assert limiter.admit(10) == pytest.approx(59.0)  # tokens: wait until the 95 leave the window


def test_rate_limited_server_answers_429_with_retry_after():
    with OpenAIServer(api_key=KEY, rpm=1) as server:
        body = {"model": "text-embedding-3-small", "input": ["a"]}
        assert post(f"{server.base_url}/embeddings", body, BEARER)[0] == 200
        code, headers, answer = post(f"{server.base_url}/embeddings", body, BEARER)
    assert code == 429 and 59 <= int(headers["retry-after"]) <= 60
    assert answer["error"]["code"] == "rate_limit_exceeded"


def test_command_line_entry_point():
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrl_retrievers.emulators.voyage_server", "--port", "0", "--latency-ms", "5",
         "--api-key", KEY],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        base_url = line.rsplit("base_url=", 1)[1].strip()
        code, _, answer = post(f"{base_url}/embeddings", {"input": ["a"], "model": "voyage-4"}, BEARER)
        assert code == 200 and len(answer["data"][0]["embedding"]) == 1024
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_openai_base64_answer_is_byte_for_byte_what_json_dumps_sends(openai):
    """The emulator joins base64 answers by hand (json.dumps was most of its CPU at benchmark
    sizes): the bytes must stay exactly json.dumps's, and the vectors the documented ones."""
    texts = ["a cat", "naïve café ☕", "x" * 300]
    body = {"model": "text-embedding-3-small", "input": texts, "dimensions": 48, "encoding_format": "base64"}
    req = urllib.request.Request(f"{openai.base_url}/embeddings", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **BEARER})
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
    answer = json.loads(raw)
    assert raw == json.dumps(answer).encode()
    assert [item["index"] for item in answer["data"]] == [0, 1, 2]
    for text, item in zip(texts, answer["data"]):
        vec = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(vec, openai.expected_vector(text, model="text-embedding-3-small", dim=48))
        assert abs(float(np.linalg.norm(vec)) - 1) < 1e-5
    floats = post(f"{openai.base_url}/embeddings", {**body, "encoding_format": "float"}, BEARER)[2]
    np.testing.assert_allclose([d["embedding"] for d in floats["data"]],
                               [openai.expected_vector(t, model="text-embedding-3-small", dim=48) for t in texts], atol=1e-7)


def test_text_vectors_match_the_per_text_definition():
    from mrl_retrievers.emulators import text_vector, unit
    from mrl_retrievers.emulators._base import text_vectors

    texts = ["one", "two", "three" * 40]
    batch = text_vectors(texts, 1536, salt="m", width=100)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(batch[i], unit(text_vector(text, 1536, salt="m")[:100]), atol=1e-6)
        np.testing.assert_array_equal(batch[i], text_vectors([text], 1536, salt="m", width=100)[0])
