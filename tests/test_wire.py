"""engine/wire.py, the lane's HTTP/1.1 client, against servers on 127.0.0.1 that answer byte for byte as a test
asks: keep-alive reuse, chunked and close-delimited bodies, interim answers, a closed connection, no answer in
time, a refused port; and the failures as the lane classifies them (engine/reach, retry)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from dispatcher.engine.wire import Pool, target
from dispatcher.reach import unreachable
from dispatcher.retry import ambiguous

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One request: its request line, headers (lower-cased names) and body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *rest = head[:-4].split(b"\r\n")
    headers = {k.decode().lower(): v.decode() for k, _, v in (h.partition(b": ") for h in rest)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def run(handler: Handler, client: Callable[[Pool, str], Awaitable[object]], timeout: float = 5.0) -> object:
    async def go() -> object:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Pool(timeout)
        try:
            return await client(pool, f"http://127.0.0.1:{port}/v1/send?x=1")
        finally:
            pool.close()
            server.close()
    return asyncio.run(go())


def test_requests_share_one_keep_alive_connection_and_arrive_byte_for_byte() -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nRetry-After: 3\r\n"
                         b"Content-Length: 9\r\n\r\n{\"id\":42}")

    async def client(pool: Pool, url: str) -> list[tuple[int, object, bytes]]:
        out = []
        for body in (b'{"to":["34600000001"]}', b"{}"):
            status, headers, answer, ready = await pool.send("POST", url, {"Content-Type": "application/json",
                                                                            "Authorization": "Basic eA=="}, body)
            assert ready > 0
            out.append((status, headers["retry-after"], answer))
        return out

    assert run(handler, client) == [(202, "3", b'{"id":42}')] * 2
    assert len(connections) == 1
    assert [s[0] for s in seen] == [b"POST /v1/send?x=1 HTTP/1.1"] * 2
    assert seen[0][1]["host"].startswith("127.0.0.1:") and seen[0][1]["authorization"] == "Basic eA=="
    assert [s[2] for s in seen] == [b'{"to":["34600000001"]}', b"{}"]


def test_chunked_close_delimited_and_interim_answers_are_read_whole() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
               b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"]
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while answers:
            await read_request(reader)
            answer = answers.pop(0)
            writer.write(answer)
            if b"Length" not in answer and b"chunked" not in answer:
                writer.close()  # a body without a length ends with the connection
                return

    async def client(pool: Pool, url: str) -> list[tuple[int, bytes]]:
        return [(s, b) for s, _, b, _ in [await pool.send("POST", url, {}, b"x") for _ in range(3)]]

    assert run(handler, client) == [(200, b'{"a":1}'), (201, b"ok"), (200, b"until the end")]
    assert connections == 1



def test_an_answer_without_a_body_keeps_its_connection() -> None:
    """204 carries no body and no length: the answer ends with its headers, and the connection serves the next."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def client(pool: Pool, url: str) -> list[tuple[int, bytes]]:
        return [(s, b) for s, _, b, _ in [await pool.send("POST", url, {}, b"x") for _ in range(3)]]

    assert run(handler, client) == [(204, b"")] * 3
    assert connections == 1

def test_a_connection_the_server_closes_after_its_answer_is_not_used_again() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1")
        await writer.drain()
        writer.close()

    async def client(pool: Pool, url: str) -> list[int]:
        return [(await pool.send("GET", url, {}, None))[0] for _ in range(3)]

    assert run(handler, client) == [200, 200, 200]
    assert connections == 3


def test_a_connection_lost_after_the_request_is_in_doubt() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()  # took the request, answered nothing

    async def client(pool: Pool, url: str) -> BaseException:
        with pytest.raises(aiohttp.ServerDisconnectedError) as e:
            await pool.send("POST", url, {}, b"{}")
        return e.value

    e = run(handler, client)
    assert isinstance(e, aiohttp.ClientError) and ambiguous(e) and unreachable(e) is None


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        assert await reader.read() == b""  # the client closes it: EOF here

    async def client(pool: Pool, url: str) -> BaseException:
        with pytest.raises(TimeoutError) as e:
            await pool.send("POST", url, {}, b"{}")
        return e.value

    e = run(handler, client, timeout=0.2)
    assert ambiguous(e)


def test_a_refused_port_is_unreachable_and_not_in_doubt() -> None:
    async def go() -> BaseException:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = Pool(5.0)
        with pytest.raises(aiohttp.ClientConnectorError) as e:
            await pool.send("POST", f"http://127.0.0.1:{port}/", {}, b"{}")
        return e.value

    e = asyncio.run(go())
    assert not ambiguous(e)
    assert unreachable(e) == f"connection refused on 127.0.0.1:{e.port}"


def test_targets_carry_the_host_header_and_path_a_url_asks() -> None:
    t = target("https://api.example.com/api/v1/sms/send?a=b")
    assert (t.origin.host, t.origin.port, t.origin.tls) == ("api.example.com", 443, True)
    assert t.origin.host_header == b"Host: api.example.com\r\n" and t.path == b"/api/v1/sms/send?a=b"
    assert target("http://[::1]:8080").origin.host_header == b"Host: [::1]:8080\r\n"
    assert target("http://h").path == b"/"
    with pytest.raises(ValueError, match="not an http"):
        target("ftp://h/x")


def test_https_verifies_the_providers_certificate(tmp_path) -> None:
    """A provider on TLS: answered when its certificate verifies (here against the test's own CA file), and
    unreachable, not in doubt, when it does not (the system's CAs do not know a self-signed one)."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
        except (asyncio.IncompleteReadError, ssl.SSLError, ConnectionError):
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def go() -> tuple[tuple[int, bytes], BaseException]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=served)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        trusting, default = Pool(5.0, ssl.create_default_context(cafile=str(cert))), Pool(5.0)
        try:
            status, _, body, _ = await trusting.send("POST", url, {}, b"{}")
            with pytest.raises(aiohttp.ClientConnectorError) as e:
                await default.send("POST", url, {}, b"{}")
            return (status, body), e.value
        finally:
            trusting.close()
            default.close()
            server.close()

    answer, e = asyncio.run(go())
    assert answer == (200, b"ok")
    assert not ambiguous(e) and (unreachable(e) or "").startswith("TLS failed on 127.0.0.1:")
