"""The stages: sources, the stream intake and context, workers, the sink and its outputs. Each stage
has open / process / close; they talk only through stream.wire."""
