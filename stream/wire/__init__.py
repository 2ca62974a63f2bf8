"""The wire: message format (protocol), ZeroMQ sockets (transport) and the shared-memory rings that
carry frames and masks between processes. Imports nothing else of stream/ except stream.log."""
