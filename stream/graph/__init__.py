"""The graph: which stages run in which process, the supervisor, single- and multi-stream pipelines."""
