"""TFDS builders for the image quality sets used for spatial pre-training.

KonIQ-10k, KADID-10k, LIVE IQA release 2 and CLIVE (LIVE In the Wild Challenge), each read
from its official label file in its published format (schema in `base`). LIVE IQA and
KADID-10k are synthetic distortions of reference images, so they are split by reference
image; KonIQ-10k and CLIVE have one content per image and are split at random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxvqa.data import label_scale
from jaxvqa.data.builders import base, label_files


# Declarative data: each builder here and in video_sets.py declares the same fields (name, MEDIA,
# SCALE, LABEL_FILES, download note) and a read_rows of one shape, for its own label file.
class Koniq10k(base.LabelledMediaBuilder):
  """KonIQ-10k: 10,073 in-the-wild photos at 1024x768, crowd MOS on a 1-5 scale."""

  name = "jaxvqa_koniq_10k"
  MEDIA = "image"
  SCALE = label_scale.PUBLISHED["koniq_10k"]
  LABEL_FILES = ("koniq10k_scores_and_distributions.csv",)
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "KonIQ-10k (koniq10k_1024x768.zip and koniq10k_scores_and_distributions.zip)",
      "the KonIQ-10k IQA database page of the MMSP group, University of Konstanz "
      "(database.mmsp-kn.de)",
      "  manual_dir/\n"
      "    koniq10k_scores_and_distributions.csv   columns: image_name, ..., MOS, SD, MOS_zscore\n"
      "    1024x768/<image_name>",
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    records = label_files.read_csv_rows(
        manual_dir / "koniq10k_scores_and_distributions.csv", ["image_name", "MOS"]
    )
    return [
        base.LabelRow(
            name=f"1024x768/{row.text('image_name')}",
            source=row.text("image_name"),
            raw_score=row.number("MOS"),
        )
        for row in records
    ]


class Kadid10k(base.LabelledMediaBuilder):
  """KADID-10k: 81 reference images x 25 distortions x 5 levels, split by reference image.

  Its label column is called "dmos" but the ratings are degradation-category ratings on a
  1-5 scale where 5 means "imperceptible", so higher is better and it is NOT flipped.
  """

  name = "jaxvqa_kadid_10k"
  MEDIA = "image"
  SCALE = label_scale.PUBLISHED["kadid_10k"]
  LABEL_FILES = ("dmos.csv",)
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "KADID-10k (kadid10k.zip)",
      "the KADID-10k IQA database page of the MMSP group, University of Konstanz "
      "(database.mmsp-kn.de)",
      "  manual_dir/\n"
      "    dmos.csv                     columns: dist_img, ref_img, dmos, var\n"
      "    images/<dist_img>            e.g. images/I01_01_01.png",
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    records = label_files.read_csv_rows(manual_dir / "dmos.csv", ["dist_img", "ref_img", "dmos"])
    return [
        base.LabelRow(
            name=f"images/{row.text('dist_img')}",
            source=row.text("ref_img"),
            raw_score=row.number("dmos"),
        )
        for row in records
    ]


class LiveIqa(base.LabelledMediaBuilder):
  """LIVE IQA release 2: 29 references, 779 distorted images, DMOS (lower is better).

  dmos.mat holds one entry per image of the five distortion folders, in the order
  jp2k (227), jpeg (233), wn (174), gblur (174), fastfading (174), each folder numbered
  img1.bmp, img2.bmp, ...; entries with orgs == 1 are copies of the reference and are
  skipped. Split by reference image (refnames_all.mat).
  """

  name = "jaxvqa_live_iqa"
  MEDIA = "image"
  SCALE = label_scale.PUBLISHED["live_iqa"]
  FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
  LABEL_FILES = ("dmos.mat", "refnames_all.mat")
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "the LIVE Image Quality Assessment Database, release 2 (databaserelease2.zip)",
      "the LIVE IQA database page of the Laboratory for Image and Video Engineering (LIVE), "
      "UT Austin (request form on the page)",
      "  manual_dir/\n"
      "    dmos.mat                     variables: dmos (1x982), orgs (1x982)\n"
      "    refnames_all.mat             variable: refnames_all (1x982 cell)\n"
      "    jp2k/img1.bmp ... jpeg/ wn/ gblur/ fastfading/   (refimgs/ is not needed)",
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    dmos_path, refs_path = manual_dir / "dmos.mat", manual_dir / "refnames_all.mat"
    scores = label_files.load_mat(dmos_path, ["dmos", "orgs"])
    dmos = label_files.mat_numbers(scores["dmos"])
    is_reference = label_files.mat_numbers(scores["orgs"]) == 1
    references = label_files.mat_strings(
        label_files.load_mat(refs_path, ["refnames_all"])["refnames_all"]
    )
    expected = sum(count for _, count in self.FOLDERS)
    for path, size in (
        (dmos_path, len(dmos)),
        (dmos_path, len(is_reference)),
        (refs_path, len(references)),
    ):
      if size != expected:
        raise label_files.LabelFileError(
            f"{path}: {size} entries, release 2 has {expected} (one per image of "
            f"{', '.join(folder for folder, _ in self.FOLDERS)})"
        )
    names = [f"{folder}/img{k}.bmp" for folder, count in self.FOLDERS for k in range(1, count + 1)]
    return [
        base.LabelRow(name=names[i], source=references[i], raw_score=float(dmos[i]))
        for i in np.flatnonzero(~is_reference)
    ]


class Clive(base.LabelledMediaBuilder):
  """CLIVE (LIVE In the Wild Image Quality Challenge): 1,162 photos, MOS on a 0-100 scale.

  The first 7 entries of the release are the study's training images (Images/trainingImages);
  as in every published protocol they are left out.
  """

  name = "jaxvqa_clive"
  MEDIA = "image"
  SCALE = label_scale.PUBLISHED["clive"]
  TRAINING_IMAGES = 7
  LABEL_FILES = ("Data/AllMOS_release.mat", "Data/AllImages_release.mat")
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "the LIVE In the Wild Image Quality Challenge Database (ChallengeDB_release.zip)",
      "the LIVE In the Wild Image Quality Challenge page of the Laboratory for Image and "
      "Video Engineering (LIVE), UT Austin",
      "  manual_dir/\n"
      "    Data/AllMOS_release.mat      variable: AllMOS_release (1x1169)\n"
      "    Data/AllImages_release.mat   variable: AllImages_release (1169x1 cell)\n"
      "    Images/<name>",
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    mos_path = manual_dir / "Data/AllMOS_release.mat"
    images_path = manual_dir / "Data/AllImages_release.mat"
    mos = label_files.mat_numbers(
        label_files.load_mat(mos_path, ["AllMOS_release"])["AllMOS_release"]
    )
    images = label_files.mat_strings(
        label_files.load_mat(images_path, ["AllImages_release"])["AllImages_release"]
    )
    if len(mos) != len(images):
      raise label_files.LabelFileError(
          f"{mos_path} has {len(mos)} scores but {images_path} names {len(images)} images"
      )
    return [
        base.LabelRow(name=f"Images/{image}", source=image, raw_score=float(score))
        for image, score in list(zip(images, mos))[self.TRAINING_IMAGES :]
    ]
