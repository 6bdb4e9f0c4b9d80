"""Fetch a model and its card from S3, verify both, and only then unpickle the model.

Unpickling runs arbitrary code, and the card says which column is which feature, so nothing is
read before it is proven: the model is published (its manifest, written last, exists), the card's
bytes are the ones the operator recorded (the expected card digest) before they are parsed, the
model's bytes are the ones training wrote (the card's and the manifest's digest) and the operator
deployed (the expected digest), and the runtime's scikit-learn can read them (same major.minor as
at training), and so can its LightGBM for a LightGBM model.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import joblib
import sklearn
from pydantic import ValidationError

from modelyard.reasons import Reason
from modelyard.storage.client import ObjectNotFound, Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.digest import bytes_digest
from modelyard.workloads.common.modelcard import ModelCard, estimator_library
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.serving.config import ServeConfig
from modelyard.workloads.serving.model import Model


@dataclass(frozen=True)
class Loaded:
    model: Model
    seconds: float


def load(config: ServeConfig, storage: Storage | None = None) -> Loaded:
    """The ready-to-serve model, or a WorkloadError whose message says what is wrong."""
    started = time.perf_counter()
    storage = storage or Storage(StorageConfig.from_env())
    manifest = read_manifest(storage, config)
    card = read_card(storage, config, manifest)
    try:
        data = storage.get_bytes(config.model_uri)
    except ObjectNotFound:
        raise WorkloadError(Reason.ModelNotFound, f"{config.model_uri} does not exist") from None
    verify(card, data, config, manifest)
    estimator = unpickle(data, config)
    model = Model(card, estimator, config.name or card.name)
    return Loaded(model, time.perf_counter() - started)


def read_manifest(storage: Storage, config: ServeConfig) -> dict[str, Any]:
    """The model's manifest: training writes it last, so without it the model is half-written."""
    try:
        manifest = storage.get_json(config.manifest_uri)
    except ObjectNotFound:
        raise WorkloadError(
            Reason.ModelNotPublished,
            f"{config.manifest_uri} does not exist: the model was never (or not yet fully) "
            "published",
        ) from None
    except ValueError as error:
        raise WorkloadError(
            Reason.InvalidModelCard, f"{config.manifest_uri}: not JSON: {error}"
        ) from None
    if not isinstance(manifest, dict):
        raise WorkloadError(Reason.InvalidModelCard, f"{config.manifest_uri}: not a JSON object")
    return manifest


def read_card(storage: Storage, config: ServeConfig, manifest: dict[str, Any]) -> ModelCard:
    try:
        document = storage.get_bytes(config.card_uri)
    except ObjectNotFound:
        raise WorkloadError(
            Reason.ModelCardNotFound,
            f"{config.card_uri} does not exist: a model is served only with the card "
            "training writes beside it",
        ) from None
    actual = bytes_digest(document)
    for expected, source in (
        (config.expected_card_digest, "expected (MODELYARD_MODEL_CARD_DIGEST)"),
        (manifest.get("cardDigest"), f"its manifest {config.manifest_uri} says"),
    ):
        if expected is not None and actual != expected:
            raise WorkloadError(
                Reason.DigestMismatch,
                f"{config.card_uri} has digest {actual} but {expected} was {source}: "
                "refusing to read a model card that is not the one trained",
            )
    try:
        return ModelCard.model_validate_json(document)
    except ValidationError as error:
        raise WorkloadError(Reason.InvalidModelCard, f"{config.card_uri}: {error}") from None


def verify(
    card: ModelCard, data: bytes, config: ServeConfig, manifest: dict[str, Any] | None = None
) -> None:
    actual = bytes_digest(data)
    published = (manifest or {}).get("digest")
    if published is not None and actual != published:
        raise WorkloadError(
            Reason.DigestMismatch,
            f"{config.model_uri} has digest {actual} but its manifest {config.manifest_uri} "
            f"says {published}: refusing to load a model file that is not the one published",
        )
    if actual != card.digest:
        raise WorkloadError(
            Reason.DigestMismatch,
            f"{config.model_uri} has digest {actual} but its card {config.card_uri} says "
            f"{card.digest}: refusing to load a model file that is not the one trained",
        )
    if config.expected_digest is not None and actual != config.expected_digest:
        raise WorkloadError(
            Reason.DigestMismatch,
            f"{config.model_uri} has digest {actual} but {config.expected_digest} was "
            "expected (MODELYARD_MODEL_DIGEST): refusing to load it",
        )
    check_version(card, config, "scikit-learn", sklearn.__version__)
    library = estimator_library(card.estimator)
    if library is not None:
        check_version(card, config, library, _installed(library))


def check_version(card: ModelCard, config: ServeConfig, library: str, running: str | None) -> None:
    """The model file holds `library`'s objects: refused unless the card records the version
    it was trained with and the server runs (`running`) the same major.minor."""
    trained = card.libraries.get(library)
    if trained is None:
        raise WorkloadError(
            Reason.VersionSkew,
            f"{config.card_uri} does not record the {library} version the model was "
            "trained with; refusing to unpickle it blind",
        )
    if running is None or _major_minor(trained) != _major_minor(running):
        runs = f"runs {running}" if running is not None else f"has no {library}"
        raise WorkloadError(
            Reason.VersionSkew,
            f"model trained with {library} {trained} but this server {runs}: pickles are not "
            f"portable across {library} minor versions; serve it with a server image of the "
            f"same {library} major.minor",
        )


def _installed(distribution: str) -> str | None:
    """The installed version, read from package metadata: nothing is imported to learn it."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def unpickle(data: bytes, config: ServeConfig) -> Any:
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as error:  # a verified file that still fails to load is a broken model
        raise WorkloadError(
            Reason.ModelLoadFailed,
            f"{config.model_uri}: cannot load: {type(error).__name__}: {error}",
        ) from None


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
