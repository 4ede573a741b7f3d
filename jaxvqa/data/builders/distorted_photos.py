"""TFDS builder for an image-quality set made by `jaxvqa make-iqa-set` (KADID-10K's recipe on our
own photos, labelled by MS-SSIM against each pristine reference).

manual_dir is the make-iqa-set output directory: its labels.csv has one row per PNG, the
references included (columns in `jaxvqa.data.iqa_set`). Every row becomes one example of the
shared image schema (`base`): source is the reference, so splits are by reference photo and no
photo's distortions are in two splits, as `kadid_10k` is split; raw_score is the row's `mos`
(MS-SSIM, 1.0 for a reference) and label its min-max scaling over the set, higher is better.
"""

from __future__ import annotations

from pathlib import Path

from jaxvqa.data import iqa_set
from jaxvqa.data import label_scale
from jaxvqa.data.builders import base, label_files


class DistortedPhotos(base.LabelledMediaBuilder):
  """Photos x synthetic distortions x levels from `jaxvqa make-iqa-set`, split by reference."""

  name = "jaxvqa_distorted_photos"
  MEDIA = "image"
  SCALE = label_scale.PUBLISHED["distorted_photos"]
  LABEL_FILES = (iqa_set.LABELS_NAME,)
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Nothing to download: make the set with\n"
      "  jaxvqa make-iqa-set --photos PHOTO_DIR --package-photos --out OUT\n"
      f"and pass OUT as manual_dir. It must hold OUT/{iqa_set.LABELS_NAME} and the images it "
      "names."
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    records = label_files.read_csv_rows(
        manual_dir / iqa_set.LABELS_NAME, ["image", "reference", "mos"]
    )
    return [
        base.LabelRow(
            name=row.text("image"), source=row.text("reference"), raw_score=row.number("mos")
        )
        for row in records
    ]
