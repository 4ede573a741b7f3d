"""Losses against plain NumPy loop references, on random and degenerate batches."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvqa.train import losses

BATCH = 10
DIM = 6
TOLERANCE = dict(rtol=2e-4, atol=2e-5)


# --- independent references: loops over the valid entries only, float64 ---


def _compact(mask, *arrays):
  keep = [i for i in range(len(mask)) if mask[i]]
  return [np.asarray([np.asarray(a[i], np.float64) for i in keep]) for a in arrays]


def reference_plcc(pred, label, mask):
  p, y = _compact(mask, pred, label)
  n = len(p)
  if n == 0:
    return 0.0

  def standardise(v):
    mean = sum(v) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / n)
    return [(x - mean) / (std + 1e-8) for x in v]

  pn, yn = standardise(p), standardise(y)
  rho = sum(a * b for a, b in zip(pn, yn)) / n
  mse = sum((a - b) ** 2 for a, b in zip(pn, yn)) / n
  mse_rho = sum((rho * a - b) ** 2 for a, b in zip(pn, yn)) / n
  return (mse + mse_rho) / 8


def reference_l1(pred, label, mask):
  p, y = _compact(mask, pred, label)
  return sum(abs(a - b) for a, b in zip(p, y)) / len(p) if len(p) else 0.0


def reference_rank(pred, label, mask, margin, group=None):
  if group is None:
    group = [0] * len(mask)
  violations = []
  for i in range(len(mask)):
    for j in range(len(mask)):
      if i == j or not (mask[i] and mask[j]) or group[i] != group[j]:
        continue
      if label[i] == label[j]:
        continue  # ties are not pairs
      order = 1.0 if label[j] > label[i] else -1.0
      violations.append(max(0.0, (float(pred[i]) - float(pred[j])) * order + margin))
  if not violations:
    return 0.0
  return sum(violations) / len(violations) / (1 + max(violations))


def _cosine(a, b):
  na = max(math.sqrt(sum(x * x for x in a)), 1e-12)
  nb = max(math.sqrt(sum(x * x for x in b)), 1e-12)
  return sum(x * y for x, y in zip(a, b)) / (na * nb)


def reference_contrastive(embedding, group, mask, temperature, variant):
  valid = [i for i in range(len(mask)) if mask[i]]
  if len({int(group[i]) for i in valid}) < 2:
    return 0.0
  e = np.asarray(embedding, np.float64)
  per_anchor = []
  for i in valid:
    positives = [j for j in valid if j != i and group[j] == group[i]]
    if not positives:
      continue
    if variant == "mean_positive":
      pos = sum(_cosine(e[i], e[j]) for j in positives) / len(positives)
      negatives = [m for m in valid if group[m] != group[i]]
      numerator = math.exp(pos / temperature)
      denominator = numerator + sum(math.exp(_cosine(e[i], e[m]) / temperature) for m in negatives)
      per_anchor.append(-math.log(numerator / denominator))
    else:
      others = [a for a in valid if a != i]
      denominator = sum(math.exp(_cosine(e[i], e[a]) / temperature) for a in others)
      terms = [
          math.log(math.exp(_cosine(e[i], e[p]) / temperature) / denominator) for p in positives
      ]
      per_anchor.append(-sum(terms) / len(terms))
  return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0


# --- batches ---


def random_batch(seed, size=BATCH):
  rng = np.random.default_rng(seed)
  pred = rng.normal(size=size).astype(np.float32)
  # Rounded labels make ties inside groups common.
  label = np.round(rng.uniform(0, 4, size=size)).astype(np.float32)
  if seed % 3 == 0:
    label = rng.normal(size=size).astype(np.float32)
  embedding = rng.normal(size=(size, DIM)).astype(np.float32)
  group = rng.integers(0, 1 + seed % 4, size=size).astype(np.int32)
  mask = rng.random(size) < 0.8
  return pred, label, embedding, group, mask


def degenerate_batches():
  rng = np.random.default_rng(123)
  base_pred = rng.normal(size=BATCH).astype(np.float32)
  base_label = rng.normal(size=BATCH).astype(np.float32)
  embedding = rng.normal(size=(BATCH, DIM)).astype(np.float32)
  two_groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3], np.int32)
  all_valid = np.ones(BATCH, bool)
  one_valid = np.zeros(BATCH, bool)
  one_valid[4] = True
  return {
      "one_group": (base_pred, base_label, embedding, np.zeros(BATCH, np.int32), all_valid),
      "groups_of_one": (
          base_pred,
          base_label,
          embedding,
          np.arange(BATCH, dtype=np.int32),
          all_valid,
      ),
      "all_ties": (base_pred, np.full(BATCH, 2.5, np.float32), embedding, two_groups, all_valid),
      "constant_pred": (
          np.full(BATCH, 0.7, np.float32),
          base_label,
          embedding,
          two_groups,
          all_valid,
      ),
      "constant_both": (
          np.ones(BATCH, np.float32),
          np.ones(BATCH, np.float32),
          embedding,
          two_groups,
          all_valid,
      ),
      "one_valid": (base_pred, base_label, embedding, two_groups, one_valid),
      "empty_mask": (base_pred, base_label, embedding, two_groups, np.zeros(BATCH, bool)),
      "zero_embedding": (
          base_pred,
          base_label,
          np.zeros((BATCH, DIM), np.float32),
          two_groups,
          all_valid,
      ),
      "identical_embedding": (
          base_pred,
          base_label,
          np.tile(embedding[:1], (BATCH, 1)),
          two_groups,
          all_valid,
      ),
  }


# jit once per (loss, shape): the test set stays fast on two cores.
plcc = jax.jit(losses.plcc_loss)
l1 = jax.jit(losses.l1_loss)
in_group_rank = jax.jit(losses.in_group_rank_loss)
all_pairs_rank = jax.jit(losses.rank_loss)
contrastive = jax.jit(losses.group_contrastive_loss, static_argnames=("temperature", "variant"))


def all_losses(pred, label, embedding, group, mask, margin=0.3):
  """name -> (jax value, reference value)."""
  return {
      "plcc": (plcc(pred, label, mask), reference_plcc(pred, label, mask)),
      "l1": (l1(pred, label, mask), reference_l1(pred, label, mask)),
      "rank": (
          in_group_rank(pred, label, group, mask, margin),
          reference_rank(pred, label, mask, margin, group),
      ),
      "rank_m0": (
          in_group_rank(pred, label, group, mask, 0.0),
          reference_rank(pred, label, mask, 0.0, group),
      ),
      "all_pairs_rank": (
          all_pairs_rank(pred, label, mask, margin),
          reference_rank(pred, label, mask, margin),
      ),
      "mean_positive": (
          contrastive(embedding, group, mask, temperature=0.1, variant="mean_positive"),
          reference_contrastive(embedding, group, mask, 0.1, "mean_positive"),
      ),
      "supcon": (
          contrastive(embedding, group, mask, temperature=0.5, variant="supcon"),
          reference_contrastive(embedding, group, mask, 0.5, "supcon"),
      ),
  }


@functools.partial(jax.jit, static_argnames="weights")
def _total_grads(pred, label, embedding, group, mask, weights):
  def objective(pred, embedding):
    return losses.total_loss(pred, label, embedding, group, mask, weights)[0]

  return jax.grad(objective, argnums=(0, 1))(pred, embedding)


EVERY_TERM = losses.LossWeights(l1=1.0, all_pairs_rank=1.0, margin=0.3)
EVERY_TERM_SUPCON = losses.LossWeights(
    l1=1.0, all_pairs_rank=1.0, contrastive_variant="supcon", temperature=0.5
)


@pytest.mark.parametrize("seed", range(30))
def test_losses_match_numpy_reference_on_random_batches(seed):
  batch = random_batch(seed)
  for name, (value, expected) in all_losses(*batch).items():
    np.testing.assert_allclose(float(value), expected, err_msg=name, **TOLERANCE)


@pytest.mark.parametrize("case", sorted(degenerate_batches()))
def test_degenerate_batches_are_finite_and_match_reference(case):
  batch = degenerate_batches()[case]
  for name, (value, expected) in all_losses(*batch).items():
    assert np.isfinite(float(value)), (case, name)
    np.testing.assert_allclose(float(value), expected, err_msg=f"{case}/{name}", **TOLERANCE)
  for weights in (EVERY_TERM, EVERY_TERM_SUPCON):
    grad_pred, grad_embedding = _total_grads(*(jnp.asarray(a) for a in batch), weights)
    assert np.all(np.isfinite(grad_pred)), case
    assert np.all(np.isfinite(grad_embedding)), case


def test_degenerate_losses_that_must_vanish():
  batches = degenerate_batches()
  values = {
      case: {k: float(v) for k, (v, _) in all_losses(*b).items()} for case, b in batches.items()
  }
  for name in ("mean_positive", "supcon"):
    assert values["one_group"][name] == 0.0  # fewer than two groups
    assert values["groups_of_one"][name] == 0.0  # no anchor
    assert values["one_valid"][name] == 0.0
    assert values["empty_mask"][name] == 0.0
  assert values["groups_of_one"]["rank"] == 0.0  # no same-group pair
  assert values["all_ties"]["rank"] == 0.0  # ties are not pairs, even with a margin
  assert values["all_ties"]["all_pairs_rank"] == 0.0
  for name in ("plcc", "l1", "rank", "all_pairs_rank"):
    assert values["empty_mask"][name] == 0.0
  for name in ("plcc", "rank", "all_pairs_rank"):  # need two entries; L1 does not
    assert values["one_valid"][name] == 0.0
  assert values["constant_both"]["plcc"] == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_gradients_finite_on_random_batches(seed):
  batch = [jnp.asarray(a) for a in random_batch(seed)]
  for weights in (EVERY_TERM, EVERY_TERM_SUPCON):
    grad_pred, grad_embedding = _total_grads(*batch, weights)
    assert np.all(np.isfinite(grad_pred)) and np.all(np.isfinite(grad_embedding))


def test_gradient_of_contrastive_loss_matches_finite_differences():
  pred, label, embedding, group, mask = random_batch(7)
  group = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2], np.int32)
  embedding = embedding.astype(np.float64)
  for variant in losses.CONTRASTIVE_VARIANTS:
    grad = jax.grad(lambda e: losses.group_contrastive_loss(e, group, mask, 0.5, variant))(
        jnp.asarray(embedding, jnp.float32)
    )
    step = 1e-5
    for row, col in [(0, 0), (3, 2), (8, 5)]:
      up, down = embedding.copy(), embedding.copy()
      up[row, col] += step
      down[row, col] -= step
      numeric = (
          reference_contrastive(up, group, mask, 0.5, variant)
          - reference_contrastive(down, group, mask, 0.5, variant)
      ) / (2 * step)
      np.testing.assert_allclose(float(grad[row, col]), numeric, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("seed", range(6))
def test_masked_junk_changes_nothing(seed):
  pred, label, embedding, group, mask = random_batch(seed)
  rng = np.random.default_rng(1000 + seed)
  junk = 5
  junk_pred = np.concatenate([pred, [np.nan, 1e30, -3.0, np.inf, 0.0]]).astype(np.float32)
  junk_label = np.concatenate([label, rng.normal(size=junk) * 1e6]).astype(np.float32)
  junk_label[-1] = np.nan
  junk_embedding = np.concatenate([embedding, rng.normal(size=(junk, DIM)) * 1e6]).astype(
      np.float32
  )
  junk_embedding[-2] = np.nan
  # Junk groups collide with real groups on purpose.
  junk_group = np.concatenate([group, group[:junk]]).astype(np.int32)
  junk_mask = np.concatenate([mask, np.zeros(junk, bool)])

  clean = all_losses(pred, label, embedding, group, mask)
  padded = all_losses(junk_pred, junk_label, junk_embedding, junk_group, junk_mask)
  for name in clean:
    np.testing.assert_allclose(
        float(padded[name][0]), float(clean[name][0]), rtol=1e-5, atol=1e-6, err_msg=name
    )

  for weights in (EVERY_TERM, EVERY_TERM_SUPCON):
    clean_grads = _total_grads(
        *(jnp.asarray(a) for a in (pred, label, embedding, group, mask)), weights
    )
    padded_grads = _total_grads(
        *(jnp.asarray(a) for a in (junk_pred, junk_label, junk_embedding, junk_group, junk_mask)),
        weights,
    )
    for clean_grad, padded_grad in zip(clean_grads, padded_grads):
      np.testing.assert_allclose(padded_grad[:BATCH], clean_grad, rtol=1e-4, atol=1e-6)
      np.testing.assert_array_equal(padded_grad[BATCH:], 0.0)


@pytest.mark.parametrize("variant", losses.CONTRASTIVE_VARIANTS)
@pytest.mark.parametrize("seed", range(4))
def test_contrastive_loss_falls_as_one_group_is_pulled_together(variant, seed):
  rng = np.random.default_rng(seed)
  group = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2], np.int32)
  mask = np.ones(BATCH, bool)
  embedding = rng.normal(size=(BATCH, DIM))
  embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
  members = group == 0
  centre = embedding[members].mean(axis=0)
  centre /= np.linalg.norm(centre)
  values = []
  for t in np.linspace(0.0, 1.0, 8):
    moved = embedding.copy()
    moved[members] = (1 - t) * embedding[members] + t * centre
    values.append(
        float(contrastive(moved.astype(np.float32), group, mask, temperature=0.5, variant=variant))
    )
  assert all(later < earlier for earlier, later in zip(values, values[1:])), values


def test_in_group_rank_loss_zero_when_ordered_positive_when_reversed():
  label = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0], np.float32)
  group = np.array([0, 0, 0, 0, 1, 1, 1, 1], np.int32)
  mask = np.ones(8, bool)
  ordered = np.array([0.1, 0.2, 0.3, 0.4, 0.0, 0.5, 1.0, 1.5], np.float32)
  # Across groups the order is wrong (group 1 starts below group 0): the
  # in-group loss must not care, the all-pairs loss must.
  assert float(in_group_rank(ordered, label, group, mask, 0.0)) == 0.0
  assert float(in_group_rank(ordered, label, group, mask, 0.05)) == 0.0  # gaps 0.1 > margin
  assert float(all_pairs_rank(ordered, label, mask, 0.0)) > 0.0
  reversed_group0 = ordered.copy()
  reversed_group0[:4] = ordered[:4][::-1]
  assert float(in_group_rank(reversed_group0, label, group, mask, 0.0)) > 0.0
  assert float(in_group_rank(ordered, label, group, mask, 0.2)) > 0.0  # margin wider than the gaps


def test_tied_scores_cost_nothing_at_margin_zero_and_the_margin_above_it():
  # Why the K-fold config ranks with m > 0: at the paper's m = 0 a model that gives every encode
  # of a source one score (the collapse issue 14 measured) has a zero rank loss, exactly as if it
  # ranked them; with m > 0 each tied pair costs m, so the loss is m / (1 + m).
  label = np.array([30.0, 60.0, 90.0, 20.0, 50.0, 80.0], np.float32)
  source = np.array([0, 0, 0, 1, 1, 1], np.int32)
  mask = np.ones(6, bool)
  tied = np.array([0.7, 0.7, 0.7, 0.2, 0.2, 0.2], np.float32)
  assert float(in_group_rank(tied, label, source, mask, 0.0)) == 0.0
  assert float(in_group_rank(tied, label, source, mask, 0.1)) == pytest.approx(0.1 / 1.1, rel=1e-6)
  ranked = np.array([0.5, 0.7, 0.9, 0.0, 0.2, 0.4], np.float32)  # gaps 0.2 > m
  assert float(in_group_rank(ranked, label, source, mask, 0.1)) == 0.0


def test_rank_scale_keeps_gradient_of_max():
  # 1 + max R is not stop-gradient'ed: the gradient must match the full formula.
  pred = np.array([0.9, 0.1, 0.5], np.float32)
  label = np.array([0.0, 1.0, 2.0], np.float32)
  mask = np.ones(3, bool)
  grad = jax.grad(losses.rank_loss)(jnp.asarray(pred), label, mask)
  step = 1e-4
  for k in range(3):
    up, down = pred.astype(np.float64), pred.astype(np.float64)
    up[k] += step
    down[k] -= step
    numeric = (reference_rank(up, label, mask, 0.0) - reference_rank(down, label, mask, 0.0)) / (
        2 * step
    )
    np.testing.assert_allclose(float(grad[k]), numeric, rtol=1e-3, atol=1e-5)


def test_total_loss_weights_terms_and_skips_zero_weights():
  pred, label, embedding, group, mask = random_batch(5)
  weights = losses.LossWeights(plcc=2.0, l1=0.5, rank=0.0, all_pairs_rank=0.25, group=0.0)
  total, parts = losses.total_loss(pred, label, embedding, group, mask, weights)
  assert set(parts) == {"plcc", "l1", "all_pairs_rank"}
  expected = (
      2.0 * reference_plcc(pred, label, mask)
      + 0.5 * reference_l1(pred, label, mask)
      + 0.25 * reference_rank(pred, label, mask, 0.0)
  )
  np.testing.assert_allclose(float(total), expected, **TOLERANCE)

  default_total, default_parts = jax.jit(losses.total_loss, static_argnums=5)(
      pred, label, embedding, group, mask, losses.LossWeights()
  )
  assert set(default_parts) == {"plcc", "rank", "group"}
  expected_default = (
      reference_plcc(pred, label, mask)
      + 0.3 * reference_rank(pred, label, mask, 0.0, group)
      + reference_contrastive(embedding, group, mask, 0.1, "mean_positive")
  )
  np.testing.assert_allclose(float(default_total), expected_default, **TOLERANCE)


@pytest.mark.parametrize(
    "field, value",
    [
        ("plcc", -1.0),
        ("rank", float("nan")),
        ("group", float("inf")),
        ("margin", -0.1),
        ("temperature", 0.0),
        ("temperature", -0.1),
        ("contrastive_variant", "simclr"),
    ],
)
def test_loss_weights_reject_bad_fields_by_name(field, value):
  with pytest.raises(ValueError, match=f"LossWeights.{field}"):
    losses.LossWeights(**{field: value})


def test_unknown_variant_rejected_by_the_loss_itself():
  with pytest.raises(ValueError, match="variant"):
    losses.group_contrastive_loss(
        np.ones((2, 3)), np.array([0, 1]), np.ones(2, bool), variant="nope"
    )


def reference_in_group_plcc(pred, label, group, mask):
  """Loops: each valid entry minus its group's valid mean, singletons dropped, then the PLCC."""
  valid = [i for i in range(len(mask)) if mask[i]]
  members = {g: [i for i in valid if group[i] == group[g]] for g in valid}
  keep = [i for i in valid if len(members[i]) > 1]

  def centred(values):
    return [
        float(values[i]) - sum(float(values[j]) for j in members[i]) / len(members[i]) for i in keep
    ]

  ones = [True] * len(keep)
  return reference_plcc(centred(pred), centred(label), ones) if len(keep) > 1 else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_in_group_plcc_loss_matches_loop_reference(seed):
  pred, label, _, group, mask = random_batch(seed)
  np.testing.assert_allclose(
      losses.in_group_plcc_loss(pred, label, group, mask),
      reference_in_group_plcc(pred, label, group, mask),
      **TOLERANCE,
  )


def test_in_group_plcc_loss_ignores_each_groups_level_and_its_singletons():
  label = np.array([30.0, 60.0, 90.0, 20.0, 50.0, 80.0, 55.0], np.float32)
  source = np.array([0, 0, 0, 1, 1, 1, 2], np.int32)
  mask = np.ones(7, bool)
  # Differences proportional to the label's inside each source, at any level per source, and
  # anything at all for the source with one encode: a perfect fit.
  proportional = np.array([0.3, 0.6, 0.9, 5.2, 5.5, 5.8, -40.0], np.float32)
  assert float(losses.in_group_plcc_loss(proportional, label, source, mask)) == pytest.approx(
      0.0, abs=1e-6
  )
  # The pooled PLCC sees the levels (source 1 scored far above source 0 with lower labels).
  assert float(losses.plcc_loss(proportional, label, mask)) > 0.1
  # Source 1's differences squeezed 30-fold, still in the right order: the sources' differences
  # no longer lie on one line, so a loss.
  squeezed = proportional.copy()
  squeezed[3:6] = [5.2, 5.21, 5.22]
  assert float(losses.in_group_plcc_loss(squeezed, label, source, mask)) > 0.01
  # No source with two valid encodes: nothing to fit.
  lone = np.array([True, False, False, True, False, False, True])
  assert float(losses.in_group_plcc_loss(proportional, label, source, lone)) == 0.0
