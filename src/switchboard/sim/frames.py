"""What the server sends, decoded and validated the way Retell validates it (spec 1.2, 1.7).

Retell drops a frame whose fields have the wrong type (``"content_complete": "true"``,
a float ``response_id``) or that is not JSON, and keeps the socket open. The simulator
does the same but reports it: ``decode_server_frame`` raises ``InvalidFrame`` and the
caller counts an ``invalid_frame`` violation. An object without ``response_type`` is a
``response`` (legacy compatibility, spec 1.7).
"""

from __future__ import annotations

import msgspec

from switchboard.protocol.outbound import OutboundMessage, Response

#: Everything a server may send, as Retell reads it: our own outbound types.
ServerFrame = OutboundMessage


class _UntaggedResponse(Response, tag=False, tag_field=None):
    """Retell treats an object without ``response_type`` as a ``response`` (legacy)."""


_decoder = msgspec.json.Decoder(ServerFrame)
_untagged = msgspec.json.Decoder(_UntaggedResponse)
_NO_TAG = "Object missing required field `response_type`"


class InvalidFrame(ValueError):
    """A frame Retell would drop: not JSON, an unknown ``response_type``, or wrong types."""


def decode_server_frame(data: str | bytes) -> ServerFrame:
    try:
        frame: ServerFrame = _decoder.decode(data)
        return frame
    except msgspec.ValidationError as err:
        if not str(err).startswith(_NO_TAG):
            raise InvalidFrame(str(err)) from None
    except msgspec.DecodeError as err:
        raise InvalidFrame(f"malformed JSON: {err}") from None
    try:
        legacy = _untagged.decode(data)
    except msgspec.ValidationError as err:
        raise InvalidFrame(f"response without response_type: {err}") from None
    return Response(**msgspec.structs.asdict(legacy))
