from .registry import AlgorithmError, get_algorithm, list_algorithms, register_algorithm
