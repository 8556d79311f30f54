"""The model: Kubernetes networking as "Kubernetes Networking Semantics" (004) defines
it. No I/O, no command line, no C: the loader and the dataplane stand on it."""
