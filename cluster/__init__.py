"""Ray Tune studies, Ray Jobs submission, DeepSpeed engine and cluster manifests."""
