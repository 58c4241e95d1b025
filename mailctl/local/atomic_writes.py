"""DynamoDB's atomic writes, for the moto server the local stack runs in its own process.

On AWS "individual write operations such as UpdateItem are atomic and always operate on the most
recent version of the item, regardless of concurrency", and every change gets a sequence number of
its own in the table's stream. moto's threaded server runs calls side by side, and its UpdateItem
reads the item, checks the condition, puts a new item if there was none and then applies the update,
with other calls in between. Two conditional writes to a new item then both pass, and the last one
in wins whatever its rank: a message's Send event, recorded at the moment of its Delivery, left the
recipient at "sent", so a canary's outcome never came back and the counters (which saw two new items)
disagreed with the item. And two changes can share a sequence number (moto numbers a record by the
stream's length), which the counters' checkpoints would take for a record already applied.

`patch_moto()` makes moto's writes atomic per item: PutItem, UpdateItem and DeleteItem (BatchWriteItem
goes through them) hold the item's lock, one of STRIPES, for the whole write, and stream records are
numbered one at a time. Writes to different items still run side by side: one lock around every
DynamoDB call did the same job but roughly halved the local stack's sending rate (`make demo`,
97 s -> 150-187 s), the calls queueing behind each other for the GIL. Transactions are not covered;
nothing in mailctl sends one. If moto's methods do not look as expected, `patch_moto()` changes nothing
and returns False, and the stack falls back to `one_dynamodb_call_at_a_time`.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections.abc import Callable
from typing import Any

STRIPES = 64
# moto's DynamoDBBackend write methods, and the name of the argument that holds the item's key.
_WRITES = {"put_item": "item_attrs", "update_item": "key", "delete_item": "key"}
_DYNAMODB_TARGET = "DynamoDB_20120810."  # X-Amz-Target of every DynamoDB API call (not Streams')
_patched = False
_patching = threading.Lock()


def patch_moto() -> bool:
    """Once per process. True if moto's writes are atomic per item from now on."""
    global _patched
    with _patching:
        if _patched:
            return True
        try:
            from moto.dynamodb.models import DynamoDBBackend
            from moto.dynamodb.models.table import StreamShard

            signatures = {name: inspect.signature(getattr(DynamoDBBackend, name)) for name in _WRITES}
            add = StreamShard.add
        except (ImportError, AttributeError, TypeError, ValueError):
            return False
        if any(list(signatures[name].parameters)[:3] != ["self", "table_name", key] for name, key in _WRITES.items()):
            return False
        stripes = [threading.RLock() for _ in range(STRIPES)]
        for name, key in _WRITES.items():
            setattr(DynamoDBBackend, name, _one_writer_per_item(getattr(DynamoDBBackend, name), signatures[name], key, stripes))
        StreamShard.add = _one_at_a_time(add)
        _patched = True
        return True


def _one_writer_per_item(method: Callable, signature: inspect.Signature, key_argument: str, stripes: list) -> Callable:
    @functools.wraps(method)
    def write(backend: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind_partial(backend, *args, **kwargs).arguments
        item = _item_key(backend, arguments.get("table_name"), arguments.get(key_argument) or {})
        with stripes[hash(item) % len(stripes)]:
            return method(backend, *args, **kwargs)

    return write


def _item_key(backend: Any, table_name: str | None, attributes: dict[str, Any]) -> str:
    """The table and the item's key attributes (PutItem passes the whole item)."""
    try:
        table = backend.get_table(table_name)
        names = [name for name in (table.hash_key_attr, table.range_key_attr) if name]
    except Exception:  # no such table: moto's own call answers that; any stripe will do
        return str(table_name)
    return json.dumps([table_name, [attributes.get(name) for name in names]], sort_keys=True, default=str)


def _one_at_a_time(method: Callable) -> Callable:
    lock = threading.RLock()

    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked


def one_dynamodb_call_at_a_time(app: Callable) -> Callable:
    """The fallback: the WSGI app, with every DynamoDB call run alone (the answer made inside the lock)."""
    lock = threading.Lock()

    def serialized(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(_DYNAMODB_TARGET):
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    return serialized
