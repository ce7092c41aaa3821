"""Container image and Kubernetes manifests of the chat platform, and their checker.

``python -m deploy.check`` (``make k8s-check``) renders every overlay of ``deploy/k8s``
and validates the result; :mod:`deploy.manifests` is shared with ``tests/deploy``.
"""
