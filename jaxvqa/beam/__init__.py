"""make-dataset and scoring as Apache Beam pipelines, for work that outgrows one machine.

    jaxvqa.beam.make_dataset   sources → mezzanines → (source, rung, codec) → encode + VMAF → manifest
    jaxvqa.beam.score          video files → scored rows, sharded JSON lines
    jaxvqa.beam.runners        the local default runner and the options handed to Beam

Needs the `beam` extra (`pip install -e ".[beam]"`). docs/BEAM.md says how to run them on Flink,
Spark and Dataflow.
"""
