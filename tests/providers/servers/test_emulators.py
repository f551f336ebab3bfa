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

from tests.providers.servers import GeminiServer, OpenAIServer, RateLimiter, VoyageServer
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
        [sys.executable, "-m", "tests.providers.servers.voyage_server", "--port", "0", "--latency-ms", "5",
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
    from tests.providers.servers import text_vector, unit
    from tests.providers.servers._base import text_vectors

    texts = ["one", "two", "three" * 40]
    batch = text_vectors(texts, 1536, salt="m", width=100)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(batch[i], unit(text_vector(text, 1536, salt="m")[:100]), atol=1e-6)
        np.testing.assert_array_equal(batch[i], text_vectors([text], 1536, salt="m", width=100)[0])
