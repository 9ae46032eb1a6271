"""gamenode's wire contract: ``gamenode.proto`` and the Python code generated from it.

``gamenode_pb2`` (messages), ``gamenode_pb2_grpc`` (stubs, servicers) and
``gamenode_pb2.pyi`` (types) are generated and committed; never edit them by
hand. After changing ``gamenode.proto`` run ``make proto``
(``python -m proto.generate``); ``python -m proto.generate --check`` and
``tests/unit/proto`` fail while the committed code is stale.

Import the modules you need explicitly (``from proto import gamenode_pb2``):
this package imports nothing itself, so importing it stays cheap.
"""
