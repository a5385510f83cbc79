"""Greedy decoding and beam search: beam search equals exhaustive search on a tiny vocabulary
and length, one beam is greedy decoding, greedy follows the teacher-forced argmax."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.rrg import models
from examples.rrg.models import decode
from examples.rrg.training import tasks

# Vocabulary {pad, bos, eos, unk, w}: 5 tokens, 3 generated steps -> 5**3 token triples.
TINY = models.ModelConfig(vocab_size=5, max_len=4, image_size=16, channels=(4, 8), d_model=16,
                          num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8, rm_dim=8)
SMALL = models.ModelConfig(vocab_size=12, max_len=8, image_size=16, channels=(4, 8), d_model=16,
                           num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8, rm_dim=8)


@functools.cache
def _model(backbone, cfg=TINY, seed=0):
  model = models.build_model(cfg, backbone, rngs=nnx.Rngs(seed))
  # Sharper next-token distributions than at initialisation, so that the search matters.
  model.lm_head.kernel[...] = model.lm_head.kernel[...] * 8.0
  return model


def _images(batch, seed=0, cfg=TINY):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(size=(batch, 1, cfg.image_size, cfg.image_size, 1)), jnp.float32)


@nnx.jit
def _step_log_probs(model, images, tokens):
  """Teacher-forced log p(tokens[:, t+1] | tokens[:, :t+1]) ``(B, T-1)``."""
  image_tokens, pooled = model.encode_images(images)
  logits = model.decode(tokens[:, :-1], model.decoder_context(image_tokens, pooled))
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def _exhaustive(model, images, max_len, length_penalty):
  """Best sequence and score of every image over all sequences of <= max_len - 1 tokens."""
  v = model.cfg.vocab_size
  triples = np.array(list(itertools.product(range(v), repeat=max_len - 1)), np.int32)
  best = []
  for image in images:
    seqs = []
    for triple in triples:  # cut at the first EOS, pad after it
      ends = np.flatnonzero(triple == tasks.EOS_ID)
      n = ends[0] + 1 if ends.size else len(triple)
      seqs.append(np.concatenate([[tasks.BOS_ID], triple[:n], [tasks.PAD_ID] * (len(triple) - n)]))
    seqs = np.unique(np.array(seqs, np.int32), axis=0)
    lengths = np.array([np.argmax(s[1:] == tasks.EOS_ID) + 1 if tasks.EOS_ID in s[1:]
                        else max_len - 1 for s in seqs])
    logp = np.asarray(_step_log_probs(model, jnp.repeat(image[None], len(seqs), 0),
                                      jnp.asarray(seqs)))
    mask = np.arange(max_len - 1)[None] < lengths[:, None]
    scores = (logp * mask).sum(1) / lengths.astype(np.float64) ** length_penalty
    i = int(np.argmax(scores))
    best.append((seqs[i], scores[i], np.sort(scores)[-2]))
  return best


@pytest.mark.slow
@pytest.mark.parametrize("backbone,length_penalty", [("encoder_decoder", 0.0), ("encoder_decoder", 1.0),
                                                     ("r2gen", 0.0), ("promptmrg", 1.0)])
def test_beam_search_equals_exhaustive_search(backbone, length_penalty):
  model = _model(backbone)
  images = _images(3, seed=1)
  max_len = TINY.max_len
  # 5**3 beams hold every sequence there is: beam search is then exhaustive by construction;
  # what is tested is its bookkeeping (parents, finished beams, lengths, the final ranking).
  seqs, scores = decode.beam_search_nbest(model, images, max_len=max_len, beam_size=125,
                                          length_penalty=length_penalty)
  for (want, want_score, runner_up), got, got_score in zip(
      _exhaustive(model, images, max_len, length_penalty), np.asarray(seqs[:, 0]),
      np.asarray(scores[:, 0])):
    assert want_score - runner_up > 1e-4  # a unique optimum, or the test proves nothing
    np.testing.assert_array_equal(got, want)
    assert abs(got_score - want_score) <= 1e-5 * abs(want_score)
  best = decode.beam_search(model, images, max_len=max_len, beam_size=125,
                            length_penalty=length_penalty)
  np.testing.assert_array_equal(best, seqs[:, 0])


def test_beams_are_distinct_and_sorted():
  model = _model("encoder_decoder", SMALL)
  seqs, scores = decode.beam_search_nbest(model, _images(2, 2, SMALL), max_len=SMALL.max_len,
                                          beam_size=4)
  scores = np.asarray(scores)
  assert np.all(np.isfinite(scores)) and np.all(np.diff(scores, axis=1) <= 0)
  for beams in np.asarray(seqs):
    assert len({tuple(b) for b in beams}) == 4
    assert np.all(beams[:, 0] == tasks.BOS_ID)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(models.BACKBONES))
def test_one_beam_is_greedy_and_greedy_follows_the_argmax(backbone):
  model = _model(backbone, SMALL, seed=3)
  images = _images(6, 3, SMALL)
  max_len = SMALL.max_len
  greedy = np.asarray(decode.greedy_decode(model, images, max_len=max_len))
  np.testing.assert_array_equal(
      decode.beam_search(model, images, max_len=max_len, beam_size=1), greedy)
  np.testing.assert_array_equal(decode.generate(model, images, max_len=max_len), greedy)
  # Every emitted token is the argmax given the emitted prefix; pad after EOS.
  argmax = np.asarray(nnx.jit(lambda m, x, t: jnp.argmax(
      m.decode(t, m.decoder_context(*m.encode_images(x))), -1))(model, images,
                                                                 jnp.asarray(greedy[:, :-1])))
  assert np.all(greedy[:, 0] == tasks.BOS_ID)
  for row, pred in zip(greedy, argmax):
    ended = False
    for t in range(1, max_len):
      assert row[t] == (tasks.PAD_ID if ended else pred[t - 1])
      ended = ended or row[t] == tasks.EOS_ID


def test_bad_arguments():
  model = _model("encoder_decoder")
  images = _images(1)
  with pytest.raises(ValueError, match="beam_size"):
    decode.beam_search(model, images, max_len=4, beam_size=0)
  with pytest.raises(ValueError, match="max_len"):
    decode.greedy_decode(model, images, max_len=TINY.max_len + 2)
  with pytest.raises(ValueError, match="max_len"):
    decode.beam_search(model, images, max_len=1)
