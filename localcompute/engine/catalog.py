"""What the provider serves: its datasets and published algorithms, by DID.

A client names a dataset by its DID; only the provider knows the files behind it.
This module turns a request's DIDs into the engine's InputSpec and AlgorithmSpec,
refusing, with Ocean's error codes, what a dataset does not allow; the engine asks it of
every job it accepts (Engine.submit), so no dialect can pass a dataset's policy by.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localcompute.core.errors import ConfigError, RefusedError
from localcompute.core.jobspec import AlgorithmSpec, FileSource, InputSpec, JobSpec
from localcompute.core.settings import AlgorithmSettings, DatasetSettings, Settings


class Catalog:
    def __init__(
        self,
        datasets: dict[str, DatasetSettings],
        algorithms: dict[str, AlgorithmSettings],
        ddos: dict[str, dict[str, Any]],
    ) -> None:
        self._datasets = datasets
        self._algorithms = algorithms
        self._ddos = ddos

    @classmethod
    def load(cls, settings: Settings) -> Catalog:
        """Read the DDO files and check every entry; blocking, so run it off the loop."""
        ddos: dict[str, dict[str, Any]] = {}
        for i, dataset in enumerate(settings.datasets):
            where = f"datasets[{i}] ({dataset.did})"
            for file in dataset.files:
                if not file.startswith(("http://", "https://")) and not Path(file).is_file():
                    raise ConfigError(f"{where}: local file {file} does not exist")
            if dataset.ddo is not None:
                ddos[dataset.did] = _read_ddo(dataset.ddo, where)
        for i, algorithm in enumerate(settings.algorithms):
            if algorithm.file is not None and not algorithm.file.is_file():
                raise ConfigError(f"algorithms[{i}]: file {algorithm.file} does not exist")
        catalog = cls(
            {d.did: d for d in settings.datasets},
            {a.did: a for a in settings.algorithms},
            ddos,
        )
        catalog._check_specs(settings)
        return catalog

    def _check_specs(self, settings: Settings) -> None:
        """Build every spec once, so a bad DID or image name stops start-up, not a request."""
        for i, dataset in enumerate(settings.datasets):
            try:
                self.input_spec(dataset.did, "dataset")
            except ValueError as e:
                raise ConfigError(f"datasets[{i}] ({dataset.did}): {e}") from e
        for i, algorithm in enumerate(settings.algorithms):
            try:
                self.algorithm_spec(algorithm.did, None)
            except ValueError as e:
                raise ConfigError(f"algorithms[{i}] ({algorithm.did}): {e}") from e

    def dataset(self, did: str, resource: str) -> DatasetSettings:
        dataset = self._datasets.get(did)
        if dataset is None:
            raise RefusedError({resource: "did_not_found"})
        return dataset

    def inputs(self, dids: list[str], algorithm_did: str | None) -> list[InputSpec]:
        """A start's datasets, in order, each checked against the algorithm; a refusal
        names the dataset's place as the provider API does ("dataset", "datasets[1]")."""
        inputs = []
        for index, did in enumerate(dids):
            resource = "dataset" if index == 0 else f"datasets[{index}]"
            self.check_algorithm(did, resource, algorithm_did)
            inputs.append(self.input_spec(did, resource))
        return inputs

    def input_spec(self, did: str, resource: str) -> InputSpec:
        dataset = self.dataset(did, resource)
        files = [
            FileSource(url=f) if f.startswith(("http://", "https://")) else FileSource(path=f)
            for f in dataset.files
        ]
        return InputSpec(did=did, files=files, ddo=self._ddos.get(did))

    def check_algorithm(self, dataset_did: str, resource: str, algorithm_did: str | None) -> None:
        """Refuse raw code on a dataset that forbids it, and algorithms it does not trust."""
        dataset = self.dataset(dataset_did, resource)
        if algorithm_did is None:
            if not dataset.allow_raw_algorithm:
                raise RefusedError({resource: "no_raw_algo_allowed"})
        elif dataset.trusted_algorithms and algorithm_did not in dataset.trusted_algorithms:
            raise RefusedError({resource: "not_trusted_algo"})

    def check_job(self, spec: JobSpec) -> None:
        """Every dataset's policy, for each input that is one of this provider's datasets:
        what the dialects ask while they build a job, asked again of any JobSpec the
        engine is handed (the Python client's too)."""
        for i, item in enumerate(spec.inputs):
            if item.did in self._datasets:
                self.check_algorithm(item.did, f"inputs[{i}]", spec.algorithm.did or None)

    def algorithm_spec(self, did: str, algocustomdata: Any) -> AlgorithmSpec:
        algorithm = self._algorithms.get(did)
        if algorithm is None:
            raise RefusedError({"algorithm": "did_not_found"})
        return AlgorithmSpec.in_container(
            algorithm.container,
            did=did,
            rawcode=algorithm.rawcode,
            url=algorithm.url,
            path=str(algorithm.file.resolve()) if algorithm.file is not None else None,
            algocustomdata=algocustomdata,
        )


def _read_ddo(path: Path, where: str) -> dict[str, Any]:
    try:
        ddo = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: cannot read the DDO {path}: {e}") from e
    if not isinstance(ddo, dict):
        raise ConfigError(f"{where}: the DDO {path} is not a JSON object")
    return ddo
