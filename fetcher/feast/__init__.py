"""Feast's side of the fetcher: its registry read into catalog types, its protobuf messages.

The generated code of Feast's messages (written for the fetcher from Feast's documented
protos, with Feast's package names and field numbers) is in fetcher.feast.proto.
"""
