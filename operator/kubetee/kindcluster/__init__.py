"""A kind cluster built offline: Go components, node image and ``kubetee kind`` commands."""
