r"""The main job on a laptop-class CPU: the cheap variant of configs/default.py.

Run:
  python train.py --config configs/demo.py

On first use it builds the embedded demo set (16 package-shipped sources at 160×128, 40 frames,
encoded with libx264 at 15/30/60/120 kbit/s and VMAF-labelled; cached in ~/.cache/jaxvqa), then
trains a tiny randomly initialised model (no pretrained weights can be downloaded) and prints
held-out-content metrics next to a bits-per-pixel baseline. Expected on a 2-core CPU: see the
README's "Demo results" table (held-out SRCC/PLCC against VMAF, minutes of wall time).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.workdir = "workdirs/demo"

  data = config.data
  data.demo.enabled = True
  data.num_frames = 4
  data.frame_size = 128
  data.groups_per_batch = 4
  data.videos_per_group = 2
  data.eval_batch_size = 8
  data.num_workers = 0
  # 16 sources: 60/15/25 % by content gives 4 held-out test sources (16 videos) rather than 3.
  data.train_fraction = 0.6
  data.validation_fraction = 0.15

  model = config.model
  model.dtype = "float32"
  model.backbone = dict(
      embed_dim=32,
      depths=(1, 1, 2, 1),
      num_heads=(1, 2, 4, 8),
      window_size=8,
      pretrained_window_sizes=(0, 0, 0, 0),
      mlp_ratio=4.0,
      drop_path_rate=0.05,
  )
  # token_norm: random-initialised features need their pooled tokens at unit scale (METHOD.md §8).
  model.fusion.update(grid=4, num_heads=4, mlp_dim=64, dropout=0.1, out_dim=128, token_norm=True)
  model.temporal.update(width=128, num_heads=4, dropout=0.1, max_frames=16)
  model.projection_dim = 64

  optim = config.optim
  optim.learning_rate = 1e-3  # random initialisation and a few hundred steps, not a fine-tune
  optim.epochs = 60  # 40 training videos, 5 steps an epoch: 300 steps
  optim.warmup_epochs = 2
  optim.ema_decay = 0.98

  config.train.log_every_steps = 10
  config.train.checkpoint_every_steps = 50
  return config
