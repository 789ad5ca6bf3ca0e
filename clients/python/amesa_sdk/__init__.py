"""Amesa Python SDK: typed stubs for the five services (generated in gen/python, shipped as the
`amesa` package) and a small client that attaches the access token to every call."""

from amesa_sdk.client import AmesaClient, BearerTokenInterceptor

__all__ = ["AmesaClient", "BearerTokenInterceptor"]
