"""backends/base.py: stop strings and chat turns."""

from constitutional.backends import chat
from constitutional.backends.base import truncate_at_stop


def test_truncate_at_stop_takes_the_earliest():
    assert truncate_at_stop("a STOP b END", ("END", "STOP")) == ("a ", True)
    assert truncate_at_stop("abc", ()) == ("abc", False)


def test_chat_alternates_roles():
    msgs = chat("u1", "a1", "u2", system="sys")
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
