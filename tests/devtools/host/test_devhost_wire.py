import io
from email.message import Message

import pytest

from devtools.host.wire import MAX_BODY_BYTES, BadRequestBody, ClientLeft, host_query_params, read_body


def headers(*pairs: tuple[str, str]) -> Message:
    message = Message()
    for name, value in pairs:
        message[name] = value
    return message


@pytest.mark.parametrize(
    "query, params",
    [
        ("dry_run=", {}),  # an empty value reaches the function as no parameter at all
        ("dry_run", {}),
        ("a=1&a=2", {"a": "1,2"}),
        ("a=&a=", {"a": ","}),  # joined first, then only an empty result is dropped
        ("a=&a=2", {"a": ",2"}),
        ("A=1&a=2&b=x+y%21", {"A": "1,2", "b": "x y!"}),  # names ignore case; the first spelling stays
        ("", {}),
    ],
)
def test_query_params_as_the_host_passes_them(query, params):
    assert host_query_params(query) == params


def test_content_length_body_is_read_exactly():
    rfile = io.BytesIO(b"hello, and the next request")
    assert read_body(headers(("Content-Length", "5")), rfile) == b"hello"
    assert read_body(headers(), io.BytesIO(b"ignored")) == b""


@pytest.mark.parametrize("value", ["-1", "abc", "5 5", "0x10", "+5", "99999999999999999999999"])
def test_unusable_content_length_is_400_before_reading(value):
    rfile = io.BytesIO(b"12345")
    with pytest.raises(BadRequestBody) as exc:
        read_body(headers(("Content-Length", value)), rfile)
    assert exc.value.status == 400 and rfile.tell() == 0


def test_conflicting_content_lengths_are_400():
    with pytest.raises(BadRequestBody) as exc:
        read_body(headers(("Content-Length", "1"), ("Content-Length", "2")), io.BytesIO(b"12"))
    assert exc.value.status == 400


def test_content_length_over_the_host_limit_is_413_before_reading():
    with pytest.raises(BadRequestBody) as exc:
        read_body(headers(("Content-Length", str(MAX_BODY_BYTES + 1))), io.BytesIO(b""))
    assert exc.value.status == 413


def test_a_body_cut_short_means_the_client_left():
    with pytest.raises(ClientLeft):
        read_body(headers(("Content-Length", "10")), io.BytesIO(b"short"))


def test_chunked_body_with_extensions_and_trailers():
    wire = b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\nnext"
    rfile = io.BytesIO(wire)
    assert read_body(headers(("Transfer-Encoding", "chunked"), ("Content-Length", "3")), rfile) == b"hello, world"
    assert rfile.read() == b"next"


@pytest.mark.parametrize("wire", [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"-1\r\n\r\n", b"1" * 20000 + b"\r\n"])
def test_malformed_chunks_are_400(wire):
    with pytest.raises(BadRequestBody) as exc:
        read_body(headers(("Transfer-Encoding", "chunked")), io.BytesIO(wire))
    assert exc.value.status == 400


def test_chunked_body_over_the_host_limit_is_413():
    with pytest.raises(BadRequestBody) as exc:
        read_body(headers(("Transfer-Encoding", "chunked")), io.BytesIO(b"%x\r\n" % (MAX_BODY_BYTES + 1)))
    assert exc.value.status == 413


def test_chunked_body_cut_short_means_the_client_left():
    with pytest.raises(ClientLeft):
        read_body(headers(("Transfer-Encoding", "chunked")), io.BytesIO(b"5\r\nhel"))


def test_a_final_coding_other_than_chunked_is_400():
    with pytest.raises(BadRequestBody) as exc:
        read_body(headers(("Transfer-Encoding", "chunked, gzip")), io.BytesIO(b""))
    assert exc.value.status == 400
