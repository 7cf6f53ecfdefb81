"""The shared OpenAI-compatible client and its JSONL request/response log.

``alignkit eval`` (judges, served models) and ``alignkit aif`` (generation, AI feedback) both talk
to endpoints through this package; it sits below both and imports nothing above ``alignkit.errors``
and ``alignkit.fsutil``.

* ``ChatClient`` (``chat.py``): one endpoint, bounded concurrency, retries; the API key is read from
  a named environment variable at request time and never printed, logged or written.
* ``JsonlLog`` (``log.py``): the resume store, one fsynced JSON line per result.
* ``urls.py``: the ``/chat/completions`` URL of a base URL, and ``display_url`` (no credentials).
"""

from alignkit.client.chat import ChatClient, ChatResponse, chunks, make_client
from alignkit.client.log import JsonlLog
from alignkit.client.urls import chat_completions_url, display_url

__all__ = ["ChatClient", "ChatResponse", "JsonlLog", "chat_completions_url", "chunks", "display_url", "make_client"]
