"""TFDS builders for the public video quality sets: KoNViD-1k, LIVE-VQC, YouTube-UGC, LSVQ.

Each reads the set's official label file in its published format from manual_dir and stores
every video as its encoded bytes (schema in `base`). Splits: LSVQ's official ones (train,
test, test_1080p); the others have none and are split at random by video with
`SplitConfig` (each video is its own content), FAST-VQA's protocol being 80/20.
"""

from __future__ import annotations

from pathlib import Path

from jaxvqa.data import label_scale
from jaxvqa.data.builders import base, label_files

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")


# Declarative data: the builders here and in image_sets.py declare the same fields and a
# read_rows of one shape, each for its own label file.
class Konvid1k(base.LabelledMediaBuilder):
  """KoNViD-1k: 1,200 Flickr videos, crowd MOS on a 1-5 scale."""

  name = "jaxvqa_konvid_1k"
  MEDIA = "video"
  SCALE = label_scale.PUBLISHED["konvid_1k"]
  LABEL_FILES = ("KoNViD_1k_mos.csv",)
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "KoNViD-1k (KoNViD_1k_videos.zip and KoNViD_1k_metadata.zip)",
      "the KoNViD-1k database page of the MMSP group, University of Konstanz "
      "(database.mmsp-kn.de)",
      "  manual_dir/\n"
      "    KoNViD_1k_mos.csv            columns: flickr_id, mos, ...\n"
      "    KoNViD_1k_videos/<flickr_id>.mp4",
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    records = label_files.read_csv_rows(manual_dir / "KoNViD_1k_mos.csv", ["flickr_id", "mos"])
    return [
        base.LabelRow(
            name=f"KoNViD_1k_videos/{row.text('flickr_id')}.mp4",
            source=row.text("flickr_id"),
            raw_score=row.number("mos"),
        )
        for row in records
    ]


class LiveVqc(base.LabelledMediaBuilder):
  """LIVE-VQC: 585 mobile-captured videos, MOS on a 0-100 scale."""

  name = "jaxvqa_live_vqc"
  MEDIA = "video"
  SCALE = label_scale.PUBLISHED["live_vqc"]
  LABEL_FILES = ("data.mat",)
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "the LIVE Video Quality Challenge (VQC) Database",
      "the LIVE-VQC page of the Laboratory for Image and Video Engineering (LIVE), "
      "UT Austin (request form on the page)",
      "  manual_dir/\n"
      "    data.mat                     variables: video_list (cell of names), mos\n"
      "    Video/<name>.mp4",
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    path = manual_dir / "data.mat"
    contents = label_files.load_mat(path, ["video_list", "mos"])
    names = label_files.mat_strings(contents["video_list"])
    scores = label_files.mat_numbers(contents["mos"])
    if len(names) != len(scores):
      raise label_files.LabelFileError(
          f"{path}: video_list has {len(names)} entries but mos has {len(scores)}"
      )
    return [
        base.LabelRow(name=f"Video/{name}", source=Path(name).stem, raw_score=float(score))
        for name, score in zip(names, scores)
    ]


class YoutubeUgc(base.LabelledMediaBuilder):
  """YouTube-UGC: about 1,380 user videos (360p-4K), MOS on a 1-5 scale.

  The MOS is published as an Excel workbook. jaxvqa reads its CSV export instead (openpyxl
  is not a dependency): save the workbook's "MOS" sheet as
  original_videos_MOS_for_YouTube_UGC_dataset.csv, keeping its header row.
  """

  name = "jaxvqa_youtube_ugc"
  MEDIA = "video"
  SCALE = label_scale.PUBLISHED["youtube_ugc"]
  CSV_NAME = "original_videos_MOS_for_YouTube_UGC_dataset.csv"
  XLSX_NAMES = (
      "original_videos_MOS_for_YouTube_UGC_dataset.xlsx",
      "MOS_for_YouTube_UGC_dataset.xlsx",
  )
  SCORE_COLUMNS = ("MOS full", "MOSFull", "MOS_full")
  LABEL_FILES = (CSV_NAME,)
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "YouTube-UGC (the original videos and MOS_for_YouTube_UGC_dataset.xlsx)",
      "the YouTube UGC Dataset page (media.withyoutube.com; files in the ugc-dataset "
      "Google Cloud Storage bucket)",
      "  manual_dir/\n"
      f'    {CSV_NAME}   the workbook\'s "MOS" sheet saved as CSV;\n'
      "                                 columns: vid, MOS full, ...\n"
      "    original_videos/<Category>/<Resolution>/<vid>.mkv   (any depth below original_videos/)",
  )

  @classmethod
  def check_manual_dir(cls, manual_dir):
    manual_dir = Path(manual_dir)
    workbooks = [name for name in cls.XLSX_NAMES if (manual_dir / name).is_file()]
    if workbooks and not (manual_dir / cls.CSV_NAME).is_file():
      raise base.ManualDataMissingError(
          f"{cls.name}: found {manual_dir / workbooks[0]} but not {manual_dir / cls.CSV_NAME}. "
          "Reading .xlsx needs openpyxl, which jaxvqa does not depend on: open the workbook, "
          f'save its "MOS" sheet as CSV under the name {cls.CSV_NAME} (keep the header row '
          "with the columns vid and MOS full) and run again."
      )
    return super().check_manual_dir(manual_dir)

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    path = manual_dir / self.CSV_NAME
    records = label_files.read_csv_rows(path, ["vid"])
    score_column = label_files.pick_column(
        path, list(records[0].cells) if records else [], self.SCORE_COLUMNS
    )
    videos = {
        file.stem: file.relative_to(manual_dir).as_posix()
        for file in sorted((manual_dir / "original_videos").rglob("*"))
        if file.suffix.lower() in VIDEO_SUFFIXES and file.is_file()
    }
    return [
        base.LabelRow(
            name=videos.get(row.text("vid"), f"original_videos/<any>/{row.text('vid')}.mkv"),
            source=row.text("vid"),
            raw_score=row.number(score_column),
        )
        for row in records
    ]


class Lsvq(base.LabelledMediaBuilder):
  """LSVQ (LIVE-FB Large-Scale Social Video Quality): about 39,000 videos, MOS 0-100.

  Official splits: labels_train_test.csv's `is_test` column gives train / test, and
  labels_test_1080p.csv is the test_1080p split. The SplitConfig fractions are unused.
  """

  name = "jaxvqa_lsvq"
  MEDIA = "video"
  SCALE = label_scale.PUBLISHED["lsvq"]
  LABEL_FILES = ("labels_train_test.csv", "labels_test_1080p.csv")
  MANUAL_DOWNLOAD_INSTRUCTIONS = base.manual_instructions(
      "LSVQ (the videos and the label files labels_train_test.csv, labels_test_1080p.csv)",
      "the LSVQ release linked from the PatchVQ GitHub repository (baidut/PatchVQ; request "
      "form, videos from Internet Archive and YFCC100M)",
      "  manual_dir/\n"
      "    labels_train_test.csv        columns: name, mos, is_test, ...\n"
      "    labels_test_1080p.csv        columns: name, mos, ...\n"
      "    <name>.mp4                   e.g. ia-batch1/<id>.mp4, yfcc-batch1/<id>.mp4",
  )

  def read_rows(self, manual_dir: Path) -> list[base.LabelRow]:
    main = label_files.read_csv_rows(
        manual_dir / "labels_train_test.csv", ["name", "mos", "is_test"]
    )
    extra = label_files.read_csv_rows(manual_dir / "labels_test_1080p.csv", ["name", "mos"])
    return [self._row(row, "test" if row.flag("is_test") else "train") for row in main] + [
        self._row(row, "test_1080p") for row in extra
    ]

  @staticmethod
  def _row(row: label_files.CsvRow, split: str) -> base.LabelRow:
    name = row.text("name")
    return base.LabelRow(
        name=name if Path(name).suffix.lower() in VIDEO_SUFFIXES else f"{name}.mp4",
        source=name,
        raw_score=row.number("mos"),
        split=split,
    )
