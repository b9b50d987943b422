"""Building KubeTEE's container image where no image registry can be reached.

``kubetee image base`` makes a Python base image from Debian packages (debootstrap),
cached by version; ``kubetee image build`` builds the Dockerfile on it (or on any base)
with this machine's pip index settings and CA certificates.
"""
