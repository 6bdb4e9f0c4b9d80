"""What every handler needs: the API access and the operator's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import kopf

from modelyard.config import OperatorConfig
from modelyard.controllers.indexes import Relations
from modelyard.controllers.kube import Kube


@dataclass(frozen=True)
class Context:
    kube: Kube
    config: OperatorConfig
    #: kopf's indexes of who refers to whom; handlers get them with their other arguments.
    relations: Relations | None = None

    def related(self) -> Relations:
        assert self.relations is not None, "from_memo(memo, kwargs) gives a handler its indexes"
        return self.relations


def from_memo(memo: kopf.Memo, kwargs: Mapping[str, Any] | None = None) -> Context:
    """The operator's context; with a handler's kwargs, also the indexes kopf passed it."""
    context: Context = memo["context"]
    if kwargs is None:
        return context
    return replace(context, relations=Relations.from_kwargs(kwargs))


def post_event(body: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """A Kubernetes Event on the object, for transitions a user wants to see."""
    # kopf only reads apiVersion, kind and metadata: a plain dict from the API serves as well.
    target: Any = body
    if warning:
        kopf.warn(target, reason=reason, message=message)
    else:
        kopf.info(target, reason=reason, message=message)
