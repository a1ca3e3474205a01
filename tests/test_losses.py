"""LSGAN and cycle losses against hand values; ImagePool behaviour and checkpoint round trip."""

from __future__ import annotations

import io

import pytest
import torch

from darlkit.losses import (
    ImagePool,
    LSGANLoss,
    cycle_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    lsgan_loss,
)

# ---------------------------------------------------------------------------------------- LSGAN


def test_lsgan_loss_hand_values() -> None:
    pred = torch.tensor([0.5, 1.5, -1.0])
    assert lsgan_loss(pred, True).item() == pytest.approx((0.25 + 0.25 + 4.0) / 3)
    assert lsgan_loss(pred, False).item() == pytest.approx((0.25 + 2.25 + 1.0) / 3)
    crit = LSGANLoss()
    assert crit(pred, True).item() == pytest.approx(1.5)
    smooth = LSGANLoss(real_label=0.9, fake_label=0.1)
    assert smooth(pred, True).item() == pytest.approx((0.16 + 0.36 + 3.61) / 3)
    assert smooth(pred, False).item() == pytest.approx((0.16 + 1.96 + 1.21) / 3)
    assert "real_label=0.9" in repr(smooth)


def test_generator_loss_sums_per_discriminator_means() -> None:
    d_s = torch.zeros(2, 1, 30, 30)  # mse to 1 = 1
    d_a = torch.full((2, 1, 14, 14), 3.0)  # mse to 1 = 4
    assert lsgan_generator_loss(d_s, d_a).item() == pytest.approx(5.0)
    assert lsgan_generator_loss(d_s).item() == pytest.approx(1.0)
    # each term is its own mean, not a mean over the pooled elements
    pooled = torch.cat([d_s.flatten(), d_a.flatten()])
    assert lsgan_generator_loss(d_s, d_a).item() != pytest.approx(lsgan_loss(pooled, True).item())


def test_discriminator_loss_hand_values_and_gradient() -> None:
    assert lsgan_discriminator_loss(torch.ones(3), torch.zeros(3)).item() == 0.0
    assert lsgan_discriminator_loss(torch.zeros(1), torch.ones(1)).item() == pytest.approx(1.0)
    real = torch.tensor([0.2, 0.6], dtype=torch.float64, requires_grad=True)
    fake = torch.tensor([0.5, -0.5, 1.0], dtype=torch.float64, requires_grad=True)
    loss = lsgan_discriminator_loss(real, fake)
    assert loss.item() == pytest.approx(0.5 * ((0.64 + 0.16) / 2 + (0.25 + 0.25 + 1.0) / 3))
    loss.backward()
    # d/dp 0.5 * mean((p - y)^2) = (p - y) / n
    torch.testing.assert_close(real.grad, (real.detach() - 1) / 2)
    torch.testing.assert_close(fake.grad, fake.detach() / 3)
    inputs = (real.detach().requires_grad_(), fake.detach().requires_grad_())
    assert torch.autograd.gradcheck(lsgan_discriminator_loss, inputs)


def test_cycle_loss_hand_values_and_gradient() -> None:
    rec = torch.tensor([[1.0, -1.0]])
    assert cycle_loss(rec, torch.tensor([[0.5, 0.5]])).item() == pytest.approx(1.0)
    assert cycle_loss(rec, rec.clone()).item() == 0.0
    assert cycle_loss(rec, torch.tensor([[1, -1]])).item() == 0.0  # integer target is cast
    x = torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 0.1, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: cycle_loss(a, y), (x,))
    cycle_loss(x, y).backward()
    torch.testing.assert_close(x.grad, torch.sign(x.detach() - y) / 3)


def test_loss_bad_inputs() -> None:
    with pytest.raises(ValueError, match="reconstruction shape"):
        cycle_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="pred must be a floating-point"):
        lsgan_loss(torch.ones(3, dtype=torch.int64), True)
    with pytest.raises(TypeError, match="target_is_real must be a bool"):
        lsgan_loss(torch.ones(3), 1)
    with pytest.raises(TypeError, match="target_is_real must be a bool"):
        LSGANLoss()(torch.ones(3), "real")
    with pytest.raises(ValueError, match="pred must not be empty"):
        lsgan_loss(torch.ones(0), True)
    with pytest.raises(ValueError, match="at least one"):
        lsgan_generator_loss()
    with pytest.raises(TypeError, match=r"fake_preds\[1\]"):
        lsgan_generator_loss(torch.ones(2), [1.0])
    with pytest.raises(TypeError, match="real_label"):
        LSGANLoss(real_label="1")
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        cycle_loss(torch.ones(2), [1.0, 1.0])


# ---------------------------------------------------------------------------------------- ImagePool


def _ids(n: int, start: int = 0) -> torch.Tensor:
    """A batch of n 'images' (1x2x2) whose every pixel is its id."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()


def _id_list(batch: torch.Tensor) -> list[int]:
    return batch[:, 0, 0, 0].long().tolist()


def test_pool_fills_then_returns_detached_same_shape() -> None:
    pool = ImagePool(5, generator=torch.Generator().manual_seed(0))
    x = _ids(3).requires_grad_()
    out = pool.query(x)
    assert not out.requires_grad and out.shape == x.shape and _id_list(out) == [0, 1, 2]
    assert len(pool) == 3
    out = pool.query(_ids(4, 3))  # ids 3, 4 fill the pool; 5, 6 meet a full pool
    assert len(pool) == 5 and _id_list(out)[:2] == [3, 4]
    # stored copies: an in-place change of the caller's tensor does not reach the pool
    y = _ids(1, 100)
    fresh = ImagePool(2)
    fresh.query(y)
    y.zero_()
    assert fresh.state_dict()["images"][0][0, 0, 0].item() == 100.0


def test_pool_swaps_with_probability_half_and_conserves_images() -> None:
    size = 10
    pool = ImagePool(size, generator=torch.Generator().manual_seed(123))
    pool.query(_ids(size))
    n = 4000
    returned = []
    swapped = 0
    for i in range(n):
        img_id = 1000 + i
        out = _id_list(pool.query(_ids(1, img_id)))[0]
        swapped += out != img_id
        returned.append(out)
    frac = swapped / n
    assert abs(frac - 0.5) < 0.032  # 4 binomial standard deviations
    # conservation: stored + returned == initial pool + queried, as multisets
    stored = [int(img[0, 0, 0]) for img in pool.state_dict()["images"]]
    assert sorted(stored + returned) == sorted(list(range(size)) + [1000 + i for i in range(n)])
    # every slot gets replaced eventually: none of the initial images is still stored
    assert not set(stored) & set(range(size))


def test_pool_size_zero_passes_through() -> None:
    pool = ImagePool(0)
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    out = pool.query(x)
    assert torch.equal(out, x) and not out.requires_grad and out.data_ptr() == x.data_ptr()
    assert len(pool) == 0 and pool.state_dict()["images"] == []


def test_pool_state_dict_round_trip_gives_identical_outputs() -> None:
    pool = ImagePool(6, generator=torch.Generator().manual_seed(1))
    for k in range(4):
        pool.query(_ids(3, 10 * k))
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    buf.seek(0)
    restored = ImagePool(6, generator=torch.Generator().manual_seed(999))
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert len(restored) == len(pool) == 6
    for k in range(10):
        batch = _ids(4, 100 + 10 * k)
        assert torch.equal(pool.query(batch), restored.query(batch))
    for a, b in zip(pool.state_dict()["images"], restored.state_dict()["images"]):
        assert torch.equal(a, b)


def test_pool_on_global_rng_round_trip_with_rng_state() -> None:
    pool = ImagePool(3)
    pool.query(_ids(5))
    state, rng = pool.state_dict(), torch.get_rng_state()
    first = [pool.query(_ids(2, 50 + 2 * k)) for k in range(6)]
    other = ImagePool(3)
    other.load_state_dict(state)
    torch.set_rng_state(rng)
    second = [other.query(_ids(2, 50 + 2 * k)) for k in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    pool.reset()
    assert len(pool) == 0


def test_pool_bad_inputs() -> None:
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="pool_size"):
            ImagePool(bad)
    with pytest.raises(TypeError, match="generator"):
        ImagePool(5, generator=123)
    pool = ImagePool(4)
    pool.query(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="per-image shape"):
        pool.query(torch.zeros(2, 1, 4, 5))
    with pytest.raises(TypeError, match="dtype"):
        pool.query(torch.zeros(2, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-empty batch"):
        pool.query(torch.zeros(0, 1, 4, 4))
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        pool.query([1.0])
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(8).load_state_dict(pool.state_dict())
    with pytest.raises(ValueError, match="more than pool_size"):
        ImagePool(1).load_state_dict({"pool_size": 1, "images": [torch.zeros(1)] * 2})
    with pytest.raises(ValueError, match="keys"):
        ImagePool(1).load_state_dict({"images": []})
