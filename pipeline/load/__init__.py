"""Loading: Kubernetes manifests (files, stdin) validated as the API server would, and
built into the model's Cluster."""
