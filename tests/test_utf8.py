import pytest

from speechacts.errors import DataError
from speechacts.utf8 import decode


def test_a_byte_order_mark_is_dropped():
    assert decode("\ufeffTalks resume.".encode("utf-8"), "x") == "Talks resume."


@pytest.mark.parametrize("raw, line, offset, message", [
    (b"Talks\nresume \xe9", 1, 0, "a.txt line 2: not UTF-8 (byte 0xe9 at offset 13); save it as UTF-8"),
    # the offset counts the byte-order mark: it is where the byte is in the file
    (b"\xef\xbb\xbfab\xff", 1, 0, "a.txt line 1: not UTF-8 (byte 0xff at offset 5); save it as UTF-8"),
    (b"ok \xff\n", 7, 100, "a.txt line 7: not UTF-8 (byte 0xff at offset 103); save it as UTF-8"),
])
def test_the_first_bad_byte_is_named_by_line_and_offset(raw, line, offset, message):
    with pytest.raises(DataError) as caught:
        decode(raw, "a.txt", line, offset)
    assert str(caught.value) == message
