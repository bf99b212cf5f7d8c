"""JSON text of configs that share sub-objects, each shared object encoded once.

The compiler hands every job the same typed model, dataset, method, training and benchmark
configs (alignkit/plan/compiler.py's cache). Encoding each job's config from scratch re-encodes those
shared objects 100,000 times in a large grid; here a shared object's text is made once and pasted.
A typed config is encoded as the contract's serialiser writes it (alignkit/contract/serial.py
`written`: its fields, less those its class leaves unwritten).

`Encoder(canonical=True)` gives exactly `serial.canonical(value)` (the text job ids hash;
tests/plan/test_canonical.py checks it against that), `canonical=False` exactly
`json.dumps(serial.to_json(value), allow_nan=False)`.
Only objects registered with `share` are memoized, and the encoder keeps a reference to each, so
an id() is never reused by another object while its text is remembered.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring_ascii as encode_string  # type: ignore[attr-defined]
from typing import Any, Iterable

from alignkit.contract.serial import layout, written

_FLOAT_ANY = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


class Encoder:
    def __init__(self, canonical: bool, drop: Iterable[str] = ()):
        self.canonical = canonical
        self.drop = frozenset(drop) if canonical else frozenset()
        self.sep, self.colon = ((",", ":") if canonical else (", ", ": "))
        self._shared: dict[int, Any] = {}  # id -> the object (kept alive so its id stays its own)
        self._text: dict[int, str] = {}
        self._orders: dict[tuple, list[tuple[str, str]]] = {}  # a dict's keys -> (key, its text) in output order
        self._views: dict[type, tuple[Any, bool]] = {}  # a config class -> its __unwritten__ hook, read in place
        # sha256 states after "{" and each leading run of shared values (sha256_hex)
        self._states: dict[Any, Any] = {(): hashlib.sha256(b"{")}

    def shared(self) -> list[Any]:
        return list(self._shared.values())

    def share(self, obj: Any) -> None:
        """Mark an object that many configs hold (and nobody mutates) for encoding once."""
        if isinstance(obj, (dict, list, tuple)) or hasattr(type(obj), "__dataclass_fields__"):
            self._shared.setdefault(id(obj), obj)

    def encode(self, value: Any) -> str:
        kind = type(value)
        if kind is str:  # the common leaves first: one call each
            return encode_string(value)
        if kind is int:
            return int.__repr__(value)
        key = id(value)
        if key in self._shared:
            text = self._text.get(key)
            if text is None:
                text = self._text[key] = self._encode(value)
            return text
        return self._encode(value)

    def sha256_hex(self, value: Any) -> str:
        """sha256(encode(value)) of a dict, in hex. Configs lead with values many jobs share (sorted
        keys: the benchmark set, checkpoints, model, ...) and differ only after them, so the hash
        state after each such leading run is kept and continued from: the shared text, often most
        of a config, is hashed once rather than once per job. The digest is the same bytes' digest.
        `value`: a typed config (or a dict)."""
        value, shape = self._view(value)
        keys = self._orders.get(shape)
        if keys is None:
            self._dict(value, shape)  # works out the key order, or leaves it unknown (non-string keys)
            keys = self._orders.get(shape)
            if keys is None:
                return hashlib.sha256(self.encode(value).encode()).hexdigest()
        shared, states = self._shared, self._states
        state = states[()]
        i = 0
        for k, key in keys:  # the leading values that are shared objects or strings
            v = value[k]
            if type(v) is str:  # noqa: E721
                token: Any = v
            elif id(v) in shared:
                token = id(v)
            else:
                break
            path = (id(state), k, token)  # states are kept here, so their ids stay theirs
            following = states.get(path)
            if following is None:
                following = states[path] = state.copy()
                following.update(((self.sep if i else "") + key + self.encode(v)).encode())
            state = following
            i += 1
        h = state.copy()
        rest = self.sep.join([key + self.encode(value[k]) for k, key in keys[i:]])
        h.update(((self.sep if i and rest else "") + rest + "}").encode())
        return h.hexdigest()

    def _encode(self, value: Any) -> str:
        if isinstance(value, str):
            return encode_string(value)
        if isinstance(value, dict):
            return self._dict(value)
        if hasattr(type(value), "__dataclass_fields__"):  # a typed config: as config.json holds it
            return self._dict(*self._view(value))
        if isinstance(value, (list, tuple)):
            return "[" + self.sep.join(map(self.encode, value)) + "]"
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if isinstance(value, int):
            return int.__repr__(value)
        if isinstance(value, float):
            if value != value or value in _FLOAT_ANY:
                if not self.canonical:
                    raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
                return "NaN" if value != value else _FLOAT_ANY[value]
            return float.__repr__(value)
        return self._stdlib(value)  # anything else: the stdlib's answer (a TypeError for what JSON cannot hold)

    def _view(self, value: Any) -> tuple[Any, Any]:
        """(a mapping of the keys to encode, its shape: what its key order is cached under). A dict is
        its own view; a typed config is read in place (its __dict__, no per-job copy) under the shape
        (its class, the fields it leaves unwritten): exactly `serial.written`'s keys and values."""
        if type(value) is dict:  # noqa: E721
            return value, tuple(value)
        cls = type(value)
        view = self._views.get(cls)
        if view is None:
            _, hook, in_place = layout(cls)
            view = self._views[cls] = (hook, in_place)
        hook, in_place = view
        if not in_place:
            w = written(value)
            return w, tuple(w)
        return value.__dict__, (cls, hook(value) if hook is not None else ())

    def _dict(self, value: Any, shape: Any = None) -> str:
        if shape is None:
            shape = tuple(value)
        keys = self._orders.get(shape)
        if keys is None:  # configs come in few shapes: each shape's key order is worked out once
            typed = bool(shape) and isinstance(shape[0], type)  # (class, unwritten): a typed config read in place
            names = [k for k in value if k not in shape[1]] if typed else list(shape)
            if not all(type(k) is str for k in names):  # noqa: E721  (rare: the stdlib's rules for other keys)
                return self._stdlib(value)
            keys = self._orders[shape] = [(k, encode_string(k) + self.colon) for k in
                                          (sorted(names) if self.canonical else names) if k not in self.drop]
        encode = self.encode
        return "{" + self.sep.join([key + (encode_string(v) if type(v) is str else encode(v))  # noqa: E721
                                    for k, key in keys for v in (value[k],)]) + "}"

    def _stdlib(self, value: Any) -> str:
        return json.dumps(self._plain(value), sort_keys=self.canonical, separators=(self.sep, self.colon),
                          allow_nan=self.canonical)

    def _plain(self, value: Any) -> Any:
        """The labels dropped at any depth (canonical), for the stdlib's slow path."""
        if hasattr(type(value), "__dataclass_fields__"):
            value = written(value)
        if isinstance(value, dict):
            return {k: self._plain(v) for k, v in value.items() if k not in self.drop}
        if isinstance(value, (list, tuple)):
            return [self._plain(v) for v in value]
        return value
