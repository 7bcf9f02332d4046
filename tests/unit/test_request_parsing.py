"""How the provider and operator APIs read what Ocean's clients really send.

ocean.py sends every optional field it has no value for as "" (algorithm url and
container checksum beside rawcode, documentId in signed status calls): those mean
"absent". A field that is present but wrong is still refused, and the refusal
names it.
"""

from __future__ import annotations

from typing import Any

import pytest

from localcompute.core.errors import RefusedError, RequestValidationError
from localcompute.core.jobspec import AlgorithmSpec
from localcompute.engine.catalog import Catalog
from localcompute.web.operator_requests import WorkflowStage
from localcompute.web.params import parse
from localcompute.web.provider import algorithm_spec
from localcompute.web.provider_requests import StartRequest, StatusRequest

CONSUMER = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
EMPTY_CATALOG = Catalog({}, {}, {})


def ocean_py_meta(**meta: Any) -> dict[str, Any]:
    """`AlgorithmMetadata(...).as_dictionary()` of ocean-lib 3.1.2, for a raw algorithm."""
    container = {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "latest", "checksum": ""}
    return {
        "meta": {
            "url": "",
            "rawcode": "echo hi",
            "language": "",
            "version": "",
            "container": {**container, **meta.pop("container", {})},
            **meta,
        }
    }


def start_body(algorithm: dict[str, Any], **dataset: Any) -> dict[str, Any]:
    return {
        "dataset": {"documentId": "did:op:abc", "serviceId": "0", "transferTxId": "0x1", **dataset},
        "environment": "test",
        "algorithm": algorithm,
        "signature": "0x" + "00" * 65,
        "nonce": 3,
        "consumerAddress": CONSUMER,
        "additionalInputs": [],
    }


def spec_of(algorithm: dict[str, Any]) -> Any:
    return algorithm_spec(EMPTY_CATALOG, parse(StartRequest, start_body(algorithm)).algorithm)


def test_ocean_py_raw_algorithm_with_empty_url_and_checksum_is_accepted() -> None:
    spec = spec_of(ocean_py_meta())

    assert (spec.rawcode, spec.url, spec.checksum) == ("echo hi", None, "")
    assert spec.image_ref == "busybox:latest" and spec.uses_rawcode


@pytest.mark.parametrize("rawcode", ["true", "ls /data", "sleep 20", "x"])
def test_raw_code_of_any_length_runs(rawcode: str) -> None:
    spec = spec_of(ocean_py_meta(rawcode=rawcode))

    assert spec.uses_rawcode and spec.rawcode == rawcode


def test_an_empty_tag_means_latest() -> None:
    assert spec_of(ocean_py_meta(container={"tag": ""})).image_ref == "busybox:latest"


def test_empty_optional_dataset_and_algorithm_fields_are_absent() -> None:
    body = start_body(
        {"documentId": "", "serviceId": "", "transferTxId": "", **ocean_py_meta()},
        serviceId="",
        transferTxId="",
        userdata="",
    )

    req = parse(StartRequest, body)

    assert req.dataset.serviceId is None and req.dataset.userdata is None
    assert req.algorithm.documentId is None and req.algorithm.meta is not None
    assert parse(StartRequest, start_body(ocean_py_meta(), userdata={})).dataset.userdata is None


@pytest.mark.parametrize(
    ("meta", "field", "words"),
    [
        ({"url": "ftp://example.org/a.py"}, "algorithm.meta.url", "not an http or https URL"),
        ({"url": "not a url"}, "algorithm.meta.url", "not an http or https URL"),
        ({"container": {"image": "Bad Image"}}, "algorithm.meta.container.image", "image name"),
        ({"container": {"tag": "no spaces"}}, "algorithm.meta.container.tag", "image tag"),
        ({"container": {"entrypoint": "  "}}, "algorithm.meta.container.entrypoint", "empty"),
        ({"container": {"checksum": "sha256:zz"}}, "algorithm.meta.container.checksum", "64 hex"),
    ],
)
def test_a_present_but_wrong_field_is_refused_by_name(
    meta: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RefusedError) as info:
        spec_of(ocean_py_meta(**meta))

    assert isinstance(info.value.payload, dict)
    [(named, message)] = info.value.payload.items()
    assert named == field and words in message


@pytest.mark.parametrize("rawcode", ["", "   ", "\n\t"])
def test_blank_raw_code_without_url_is_refused(rawcode: str) -> None:
    with pytest.raises(RefusedError) as info:
        spec_of(ocean_py_meta(rawcode=rawcode))

    assert info.value.payload == {
        "algorithm.meta": "invalid: the algorithm needs rawcode, a url or a file"
    }


def test_blank_raw_code_beside_a_url_uses_the_url() -> None:
    spec = spec_of(ocean_py_meta(rawcode="  ", url="https://example.org/algo.py"))

    assert not spec.uses_rawcode and spec.url == "https://example.org/algo.py"


def test_a_missing_dataset_document_id_is_still_a_validation_error() -> None:
    with pytest.raises(RequestValidationError) as info:
        parse(StartRequest, start_body(ocean_py_meta(), documentId=""))

    assert list(info.value.errors) == ["dataset.documentId"]


def test_signed_status_filters_sent_empty_are_absent() -> None:
    req = parse(
        StatusRequest,
        {"consumerAddress": CONSUMER, "jobId": "", "documentId": "", "signature": ""},
    )

    assert (req.jobId, req.documentId, req.signature) == (None, None, None)


def test_operator_stage_with_empty_url_and_checksum_beside_rawcode() -> None:
    stage = parse(
        WorkflowStage,
        {
            "input": [{"id": "did:op:abc", "url": ["https://example.org/a.csv", ""]}],
            "algorithm": {
                "id": "",
                "url": "",
                "rawcode": "true",
                "remote": {},
                "container": {
                    "image": "busybox",
                    "tag": "",
                    "entrypoint": "sh $ALGO",
                    "checksum": "",
                },
            },
        },
    )

    assert stage.algorithm.url is None and stage.algorithm.remote is None
    assert stage.algorithm.id is None and stage.algorithm.container.checksum is None
    assert stage.input[0].url == ["https://example.org/a.csv"]
    assert (
        parse(
            WorkflowStage,
            {"input": [{"id": "x", "url": ""}], "algorithm": stage.algorithm.model_dump()},
        )
        .input[0]
        .url
        is None
    )


def test_a_job_stored_with_the_old_untyped_extra_bag_still_reads() -> None:
    from localcompute.core.jobspec import JobSpec

    old = {
        "environment": "e",
        "algorithm": {"image": "busybox", "entrypoint": "sh $ALGO", "rawcode": "true"},
        "extra": {"api": "operator", "output": {"publishOutput": True}, "chainId": 8996},
    }

    spec = JobSpec.model_validate(old)

    assert (spec.api, spec.workflow_output, spec.chain_id) == (
        "operator",
        {"publishOutput": True},
        8996,
    )


def test_config_and_requests_share_one_container_model_with_their_own_strictness() -> None:
    from pydantic import ValidationError

    from localcompute.core.settings import ContainerSettings
    from localcompute.web.provider_requests import ContainerRef

    sent = {"image": "busybox", "entrypoint": "sh $ALGO", "tag": "", "checksum": "", "x": 1}
    assert ContainerRef.model_validate(sent).tag is None  # clients' extra keys: ignored
    with pytest.raises(ValidationError, match="x"):
        ContainerSettings.model_validate(sent)  # a typo in the config: refused
    config = ContainerSettings(image="busybox", entrypoint="sh $ALGO")
    spec = AlgorithmSpec.in_container(config, rawcode="true")
    assert spec.image_ref == "busybox:latest" and spec.checksum == ""
