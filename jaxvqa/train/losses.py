"""Training losses of the coarse-to-fine strategy (docs/METHOD.md "Losses: coarse to fine").

Every loss is a small pure function over the *global* batch, so a run on one
device and on eight gives the same number. Shared conventions:

- ``pred`` [B] float: predicted quality scores ŷ.
- ``label`` [B] float: target scores y (VMAF pseudo-labels or MOS).
- ``embedding`` [B, D] float: projection-head outputs; normalised again here.
- ``group`` [B] int: bitrate group (ladder rung) of each video.
- ``mask`` [B] bool: False for padded batch entries. Padded entries never change
  a loss or receive a gradient, whatever they hold (NaN included): every input
  is replaced by zero at masked positions before any arithmetic.

All losses are computed in float32, return a scalar, are jit-able (no Python
branching on array values) and stay finite, with finite gradients, on
degenerate batches: one group, a group of one, tied or constant labels,
constant predictions, a single valid entry, an empty mask.

``total_loss`` weights the terms by a ``LossWeights`` and skips every term
whose weight is zero.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxvqa.models.l2 import l2_normalize

CONTRASTIVE_VARIANTS = ("mean_positive", "supcon")

# Added to the standard deviation before dividing, as in the authors' PLCC loss.
_PLCC_STD_EPS = 1e-8


def _valid_float(values: jax.Array, mask: jax.Array) -> jax.Array:
  """``values`` as float32 with masked entries zeroed. [B, ...] -> [B, ...].

  ``jnp.where`` (not multiplication) so NaN/inf padding cannot leak in, neither
  forward (0·NaN = NaN) nor backward.
  """
  values = jnp.asarray(values, jnp.float32)
  mask = jnp.reshape(mask, mask.shape + (1,) * (values.ndim - mask.ndim))
  return jnp.where(mask, values, 0.0)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``values`` [B] over ``mask`` [B]; 0 for an empty mask."""
  count = jnp.sum(mask)
  return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(count, 1)


def _masked_standardise(values: jax.Array, mask: jax.Array) -> jax.Array:
  """(x − mean) / (biased std + 1e-8) over the valid entries. [B] -> [B].

  The square root is taken only of a strictly positive variance: d sqrt(v)/dv
  is infinite at v = 0, and inf·0 would turn the gradient of a constant input
  into NaN. Masked entries come out as 0.

  The first valid value is subtracted before the mean: the result does not
  change (shift invariance, hence the stop-gradient), but a constant input
  then centres to exact zeros instead of float32 round-off that the 1e-8
  would blow up to O(1).
  """
  anchor = jax.lax.stop_gradient(values[jnp.argmax(mask)])
  values = jnp.where(mask, values - anchor, 0.0)
  mean = _masked_mean(values, mask)
  centred = jnp.where(mask, values - mean, 0.0)
  variance = _masked_mean(centred**2, mask)
  positive = variance > 0
  std = jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)
  return centred / (std + _PLCC_STD_EPS)


def plcc_loss(pred: jax.Array, label: jax.Array, mask: jax.Array) -> jax.Array:
  """Differentiable PLCC loss of the authors' code (FAST-VQA family).

  With ŷn, yn the standardised predictions and labels and ρ = mean(ŷn·yn):
  ``(MSE(ŷn, yn) + MSE(ρ·ŷn, yn)) / 8``, all over the valid entries. It is 0
  when fewer than two entries are valid. Near-constant predictions give large
  (finite) gradients: standardisation divides by their spread.

  Args:
    pred: [B] predictions.
    label: [B] targets.
    mask: [B] bool, True for real entries.

  Returns:
    [] scalar loss.
  """
  mask = jnp.asarray(mask, bool)
  pred_n = _masked_standardise(_valid_float(pred, mask), mask)
  label_n = _masked_standardise(_valid_float(label, mask), mask)
  rho = _masked_mean(pred_n * label_n, mask)
  mse = _masked_mean((pred_n - label_n) ** 2, mask)
  mse_scaled = _masked_mean((rho * pred_n - label_n) ** 2, mask)
  return (mse + mse_scaled) / 8.0


def in_group_plcc_loss(
    pred: jax.Array, label: jax.Array, group: jax.Array, mask: jax.Array
) -> jax.Array:
  """``plcc_loss`` of predictions and labels after subtracting each group's mean from both.

  With groups = source contents (batches of sources × rungs) it scores how linearly the
  predicted differences between encodes of one content follow the label's, whatever the level
  the model gives each content. The pooled PLCC mixes those differences with the content levels,
  which a no-reference model learns worse, so its gradients mostly move the levels. Entries whose
  group has no other valid entry have no difference to fit and are left out.

  Args:
    pred: [B] predictions.
    label: [B] targets.
    group: [B] int group (e.g. source content).
    mask: [B] bool.

  Returns:
    [] scalar loss; 0 when fewer than two entries have a partner in their group.
  """
  mask = jnp.asarray(mask, bool)
  same = (jnp.asarray(group)[:, None] == jnp.asarray(group)[None, :]) & mask[None, :]
  count = jnp.sum(same, axis=1)
  paired = mask & (count > 1)

  def centred(values):
    values = _valid_float(values, mask)
    return values - (same @ values) / jnp.maximum(count, 1)

  return plcc_loss(centred(pred), centred(label), paired)


def l1_loss(pred: jax.Array, label: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean absolute error over the valid entries; 0 for an empty mask.

  Args:
    pred: [B] predictions.
    label: [B] targets.
    mask: [B] bool.

  Returns:
    [] scalar loss.
  """
  mask = jnp.asarray(mask, bool)
  error = _valid_float(pred, mask) - _valid_float(label, mask)
  return _masked_mean(jnp.abs(error), mask)


def _pairwise_rank_loss(
    pred: jax.Array, label: jax.Array, pair_mask: jax.Array, margin: float
) -> jax.Array:
  """Margin ranking loss over the ordered pairs (i, j) in ``pair_mask`` [B, B].

  ``R_ij = relu((ŷ_i − ŷ_j)·sign(y_j − y_i) + m)``; ``ΣR / #pairs / (1 + max R)``.
  Pairs with tied labels are dropped: they carry no order, and with m > 0 each
  would add a constant m to the loss and push tied predictions apart.

  The scale ``1 + max R`` is *not* stop-gradient'ed, as in the authors'
  PyTorch code; it is at least 1, so the loss and its gradient stay finite.
  """
  order = jnp.sign(label[None, :] - label[:, None])  # [i, j] = sign(y_j − y_i)
  pair_mask = pair_mask & (order != 0)
  violation = jax.nn.relu((pred[:, None] - pred[None, :]) * order + margin)
  violation = jnp.where(pair_mask, violation, 0.0)
  pair_count = jnp.sum(pair_mask)
  mean_violation = jnp.sum(violation) / jnp.maximum(pair_count, 1)
  return mean_violation / (1.0 + jnp.max(violation))


def _valid_pairs(mask: jax.Array) -> jax.Array:
  """[B] bool -> [B, B] bool: both entries valid and i ≠ j."""
  size = mask.shape[0]
  return mask[:, None] & mask[None, :] & ~jnp.eye(size, dtype=bool)


def in_group_rank_loss(
    pred: jax.Array,
    label: jax.Array,
    group: jax.Array,
    mask: jax.Array,
    margin: float = 0.0,
) -> jax.Array:
  """Fine stage: rank loss over ordered pairs inside the same bitrate group.

  ``R_ij = relu((ŷ_i − ŷ_j)·sign(y_j − y_i) + m)`` over valid pairs i ≠ j with
  ``group_i == group_j`` and ``y_i ≠ y_j`` (ties are not pairs);
  ``L = ΣR / #pairs / (1 + max R)``, 0 when there is no pair. ``max R`` keeps
  its gradient, as in the authors' code.

  Args:
    pred: [B] predictions.
    label: [B] targets.
    group: [B] int bitrate group.
    mask: [B] bool.
    margin: m >= 0.

  Returns:
    [] scalar loss.
  """
  mask = jnp.asarray(mask, bool)
  group = jnp.asarray(group)
  same_group = group[:, None] == group[None, :]
  return _pairwise_rank_loss(
      _valid_float(pred, mask),
      _valid_float(label, mask),
      _valid_pairs(mask) & same_group,
      margin,
  )


def rank_loss(pred: jax.Array, label: jax.Array, mask: jax.Array, margin: float = 0.0) -> jax.Array:
  """``in_group_rank_loss`` over all valid pairs, whatever their group.

  Args:
    pred: [B] predictions.
    label: [B] targets.
    mask: [B] bool.
    margin: m >= 0.

  Returns:
    [] scalar loss.
  """
  mask = jnp.asarray(mask, bool)
  return _pairwise_rank_loss(
      _valid_float(pred, mask), _valid_float(label, mask), _valid_pairs(mask), margin
  )


def group_contrastive_loss(
    embedding: jax.Array,
    group: jax.Array,
    mask: jax.Array,
    temperature: float = 0.1,
    variant: str = "mean_positive",
) -> jax.Array:
  """Coarse stage: pull embeddings of one bitrate group together, push groups apart.

  s = cosine similarity of the (re-normalised) embeddings; an anchor is a valid
  sample whose group has another valid member.

  - ``"mean_positive"`` (docs/METHOD.md, after TTA-IQA): pos_i = mean of s(i, j) over
    the other members of i's group;
    ``ℓ_i = −log(e^{pos_i/τ} / (e^{pos_i/τ} + Σ_{m ∉ g(i)} e^{s(i,m)/τ}))``.
  - ``"supcon"`` (Khosla et al. 2020, group as class, no base-temperature
    factor): ``ℓ_i = −mean_{p ∈ P(i)} log(e^{s(i,p)/τ} / Σ_{a ≠ i} e^{s(i,a)/τ})``.

  L = mean of ℓ_i over anchors; 0 when the valid entries span fewer than two
  groups (for both variants, so "supcon" does not act on a one-group batch) or
  when there is no anchor.

  Args:
    embedding: [B, D] projections.
    group: [B] int bitrate group.
    mask: [B] bool.
    temperature: τ > 0.
    variant: one of ``CONTRASTIVE_VARIANTS``.

  Returns:
    [] scalar loss.
  """
  if variant not in CONTRASTIVE_VARIANTS:
    raise ValueError(
        f"group_contrastive_loss: variant={variant!r} is unknown; use one of"
        f" {CONTRASTIVE_VARIANTS}."
    )
  mask = jnp.asarray(mask, bool)
  group = jnp.asarray(group)
  unit = l2_normalize(_valid_float(embedding, mask))
  logits = (unit @ unit.T) / temperature  # [B, B]
  valid_pairs = _valid_pairs(mask)
  same_group = group[:, None] == group[None, :]
  positive = valid_pairs & same_group  # [B, B]
  negative = valid_pairs & ~same_group  # [B, B]
  positive_count = jnp.sum(positive, axis=1)  # [B]
  is_anchor = mask & (positive_count > 0) & jnp.any(negative)

  if variant == "mean_positive":
    positive_logit = jnp.sum(jnp.where(positive, logits, 0.0), axis=1) / jnp.maximum(
        positive_count, 1
    )
    # Column 0 holds the positive, so no row of the log-sum-exp is all −inf.
    candidates = jnp.concatenate(
        [positive_logit[:, None], jnp.where(negative, logits, -jnp.inf)], axis=1
    )  # [B, 1 + B]
    per_anchor = jax.nn.logsumexp(candidates, axis=1) - positive_logit
  else:
    others = jnp.where(valid_pairs, logits, -jnp.inf)
    # A row with no valid partner would be all −inf; it is never an anchor,
    # so give it a finite dummy column instead.
    has_partner = jnp.any(valid_pairs, axis=1, keepdims=True)
    normaliser = jax.nn.logsumexp(jnp.where(has_partner, others, 0.0), axis=1)
    log_prob = jnp.where(positive, logits - normaliser[:, None], 0.0)
    per_anchor = -jnp.sum(log_prob, axis=1) / jnp.maximum(positive_count, 1)

  return _masked_mean(per_anchor, is_anchor)


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Weights and constants of the training objective (defaults: docs/METHOD.md).

  ``L = plcc·L_plcc + l1·L_l1 + rank·L_rank(in group) + all_pairs_rank·L_rank(all)
  + group·L_group``. Frozen and hashable, so it can be a static argument of a
  jitted step.

  Attributes:
    plcc: weight of ``plcc_loss``.
    l1: weight of ``l1_loss``.
    rank: λ_r, weight of ``in_group_rank_loss``.
    all_pairs_rank: weight of ``rank_loss`` (pairs across groups too).
    group: λ_g, weight of ``group_contrastive_loss``.
    temperature: τ of the contrastive loss, > 0.
    margin: m of both rank losses, >= 0.
    contrastive_variant: one of ``CONTRASTIVE_VARIANTS``.
  """

  # Declarative data: a field list alike in shape to models/fusion.py's modules'.
  plcc: float = 1.0
  l1: float = 0.0
  rank: float = 0.3
  all_pairs_rank: float = 0.0
  group: float = 1.0
  temperature: float = 0.1
  margin: float = 0.0
  contrastive_variant: str = "mean_positive"

  def __post_init__(self):
    for name in ("plcc", "l1", "rank", "all_pairs_rank", "group", "margin"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(
            f"LossWeights.{name}={value!r} must be a finite number >= 0;"
            " set it to 0 to switch the term off."
        )
    if not isinstance(self.temperature, (int, float)) or not (0 < self.temperature < float("inf")):
      raise ValueError(
          f"LossWeights.temperature={self.temperature!r} must be a finite number"
          " > 0 (the paper uses 0.1)."
      )
    if self.contrastive_variant not in CONTRASTIVE_VARIANTS:
      raise ValueError(
          f"LossWeights.contrastive_variant={self.contrastive_variant!r} is"
          f" unknown; use one of {CONTRASTIVE_VARIANTS}."
      )


def total_loss(
    pred: jax.Array,
    label: jax.Array,
    embedding: jax.Array,
    group: jax.Array,
    mask: jax.Array,
    weights: LossWeights,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Weighted sum of the enabled losses, and each enabled loss for logging.

  Terms with weight 0 are not computed and do not appear in the dict.

  Args:
    pred: [B] predictions.
    label: [B] targets.
    embedding: [B, D] projections.
    group: [B] int bitrate group.
    mask: [B] bool.
    weights: which terms, how strongly, and their constants.

  Returns:
    ([] total, {name: [] unweighted loss}) with names among "plcc", "l1",
    "rank", "all_pairs_rank", "group".
  """
  terms = {
      "plcc": lambda: plcc_loss(pred, label, mask),
      "l1": lambda: l1_loss(pred, label, mask),
      "rank": lambda: in_group_rank_loss(pred, label, group, mask, weights.margin),
      "all_pairs_rank": lambda: rank_loss(pred, label, mask, weights.margin),
      "group": lambda: group_contrastive_loss(
          embedding, group, mask, weights.temperature, weights.contrastive_variant
      ),
  }
  parts = {name: compute() for name, compute in terms.items() if getattr(weights, name) > 0}
  total = sum(
      (getattr(weights, name) * value for name, value in parts.items()),
      jnp.zeros((), jnp.float32),
  )
  return total, parts
