"""Task registry: eight NLP datasets as deterministic episodic benchmarks."""
from .benchmark import BenchmarkSpec, EpisodeManifest, build_manifest, check_disjoint, iter_episodes, make_benchmark
from .episodes import Episode, EpisodeShape, sample_episode
from .loading import DataError, LoadedSplit, export_mirror, load_split, resolve_data_dir
from .registry import UnknownDatasetError, get_dataset_spec, list_datasets, register_dataset
from .spec import DatasetSpec

_TOKENIZE = ("EncodingSettings", "EpisodeEncoder", "TokenCache")


def __getattr__(name: str):
    """Tokenisation needs torch; importing it lazily keeps `suite tasks`/`suite tune` start-up light."""
    if name in _TOKENIZE:
        from . import tokenize

        return getattr(tokenize, name)
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")

__all__ = [
    "BenchmarkSpec", "DataError", "DatasetSpec", "Episode", "EpisodeEncoder", "EpisodeManifest",
    "EpisodeShape", "EncodingSettings", "LoadedSplit", "TokenCache", "UnknownDatasetError",
    "build_manifest", "check_disjoint", "export_mirror", "get_dataset_spec", "iter_episodes",
    "list_datasets", "load_split", "make_benchmark", "register_dataset", "resolve_data_dir",
    "sample_episode",
]
