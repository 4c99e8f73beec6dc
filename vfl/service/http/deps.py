"""What every router depends on: the service's Node, from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vfl.service.node import Node


def node_of(request: Request) -> Node:
    return request.app.state.node


NodeDep = Annotated[Node, Depends(node_of)]

#: An OpenAPI request body of a protocol message (one binary frame).
BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/vnd.vfl.message": {"schema": {"type": "string", "format": "binary"}}},
    }
}

__all__ = ["BINARY_BODY", "NodeDep", "node_of"]
