"""Object encoders and the object-conditioned denoiser: invariances, a brute-force BPS, the null object token,
the object-token dropout objective and the model file."""

import dataclasses

import numpy as np
import pytest
import torch

from interhandgen.diffusion import Schedule
from interhandgen.exceptions import InputError
from interhandgen.models import build_model, registered
from interhandgen.models.artifact import build_network, export_model, read_model_file
from interhandgen.models.object_encoder import BPSEncoder, ObjectEncoderConfig, PointNetEncoder
from interhandgen.models.object_loss import object_diffusion_loss
from interhandgen.objects.frame import surface_samples
from interhandgen.objects.library import sample_object
from interhandgen.training import TrainConfig

CONFIG = {"kind": "shared_object", "hidden_dim": 64, "embed_dim": 32, "num_layers": 3, "skips": [1], "num_heads": 2,
          "ff_dim": 64, "dropout": 0.0, "object_encoder": {"type": "pointnet", "width": 16}}


def _points(b=3, n=64, seed=0):
    rng = np.random.default_rng(seed)
    objs = [sample_object(f, rng) for f in ("box", "mug", "sphere")][:b]
    return torch.tensor(np.stack([surface_samples(o.vertices, o.faces, n) for o in objs]), dtype=torch.float32)


def test_pointnet_is_invariant_to_point_order_and_sees_the_shape():
    torch.manual_seed(0)
    enc = PointNetEncoder(ObjectEncoderConfig(width=16), 32, 64)
    p = _points()
    perm = torch.randperm(p.shape[1])
    torch.testing.assert_close(enc(p), enc(p[:, perm]), rtol=0, atol=1e-6)
    out = enc(p)
    assert (out[0] - out[1]).abs().max() > 1e-3  # different objects, different tokens


def test_bps_features_equal_a_brute_force_nearest_point_signed_distance():
    enc = BPSEncoder(ObjectEncoderConfig(type="bps", basis=40), 32, 64)
    p = _points(n=50).double()
    feats = enc.features(p)
    basis = enc.basis.double().numpy()
    for b in range(p.shape[0]):
        pts, nrm = p[b, :, :3].numpy(), p[b, :, 3:].numpy()
        for k in range(len(basis)):
            j = min(range(len(pts)), key=lambda i: float(np.sum((basis[k] - pts[i]) ** 2)))
            assert abs(float(feats[b, k]) - float(np.dot(basis[k] - pts[j], nrm[j]))) < 1e-12
    assert (np.linalg.norm(basis, axis=1) <= 0.25 + 1e-7).all()


def test_null_object_rows_equal_the_object_free_forward():
    torch.manual_seed(0)
    net = build_model(CONFIG).eval()
    x, t = torch.randn(3, 64), torch.tensor([0, 50, 128])
    cond, mask = torch.randn(3, 64), torch.tensor([False, True, True])
    tok = net.encode(_points())
    off = torch.zeros(3, dtype=torch.bool)
    torch.testing.assert_close(net(x, t, cond, mask, tok, off), net(x, t, cond, mask), rtol=0, atol=0)
    on = net(x, t, cond, mask, tok, ~off)
    assert (on - net(x, t, cond, mask)).abs().max() > 1e-4  # the object changes the prediction
    # rows are independent: a row's output does not depend on the other rows' objects
    torch.testing.assert_close(net(x[:1], t[:1], cond[:1], mask[:1], tok[:1], ~off[:1]), on[:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError):
        net(x, t, cond, mask, tok[:2], ~off)


def _objective_setup():
    """A small object network, a 20-step schedule, 4 standardised pairs, their objects' points, unit statistics."""
    torch.manual_seed(0)
    net = build_model(CONFIG)
    cfg = TrainConfig(num_timesteps=20, schedule="cosine")
    sched = Schedule.from_config(cfg.to_dict())
    batch, pts = torch.randn(4, 2, 64), _points(b=3).repeat(2, 1, 1)[:4]
    return net, cfg, sched, batch, pts, (torch.zeros(2, 64), torch.ones(2, 64))


def test_object_dropout_objective_masks_the_canonical_anchor_slots():
    net, cfg, sched, batch, pts, stats = _objective_setup()
    # all objects dropped: the anchor's 9 frame outputs get no gradient
    out = {}

    def hook(module, inputs, output):
        output.retain_grad()
        out["pred"] = output

    handle = net.denoiser.output_proj.register_forward_hook(hook)
    loss, la, lo = object_diffusion_loss(net, batch, sched, cfg, torch.Generator().manual_seed(0), points=pts,
                                         stats=stats, object_drop_prob=1.0, rotate_z=False)
    loss.backward()
    g = out["pred"].grad
    assert torch.equal(g[:4, 55:], torch.zeros_like(g[:4, 55:])) and g[:4, :55].abs().sum() > 0
    assert g[4:].abs().sum() > 0
    # no object dropped: they are learned
    net.zero_grad()
    loss, _, _ = object_diffusion_loss(net, batch, sched, cfg, torch.Generator().manual_seed(0), points=pts,
                                       stats=stats, object_drop_prob=0.0, rotate_z=True)
    loss.backward()
    assert out["pred"].grad[:4, 55:].abs().sum() > 0
    handle.remove()
    # the total is the mean squared error of both stages, recomputed by hand (drop 0, no rotation)
    gen = torch.Generator().manual_seed(3)
    loss, la, lo = object_diffusion_loss(net, batch, sched, cfg, gen, points=pts, stats=stats, object_drop_prob=0.0,
                                         rotate_z=False)
    gen = torch.Generator().manual_seed(3)
    torch.rand(4, generator=gen)  # the dropout draw
    t = torch.cat([torch.randint(0, 20, (4,), generator=gen)])
    t = torch.cat([t, 19 - t])
    noise = torch.randn(8, 64, generator=gen)
    x0 = torch.cat([batch[:, 0], batch[:, 1]])
    from interhandgen.diffusion import q_sample

    x_t = q_sample(x0, t, noise, sched)
    cond = torch.cat([torch.zeros(4, 64), batch[:, 0]])
    mask = torch.cat([torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)])
    tok = net.encode(pts)
    pred = net(x_t, t, cond, mask, torch.cat([tok, tok]), torch.ones(8, dtype=torch.bool))
    err = ((pred - x0) ** 2).mean(1)
    torch.testing.assert_close(la, err[:4].mean().detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(lo, err[4:].mean().detach(), rtol=1e-5, atol=1e-7)


def test_model_file_carries_the_encoder_config_and_conditioning(tmp_path):
    torch.manual_seed(0)
    net = build_model({**CONFIG, "object_encoder": {"type": "bps", "basis": 32}, "object_drop_prob": 0.3})
    assert registered(CONFIG).conditioning == ("hand", "object")
    path = tmp_path / "m.safetensors"
    objects = {"num_points": 64, "orientations": {"box": [[0.1, 0.2, 0.3]]}}
    export_model(net.state_dict(), {**CONFIG, "object_encoder": {"type": "bps", "basis": 32}, "object_drop_prob": 0.3},
                 torch.zeros(2, 64), torch.ones(2, 64), path, {"train_config": {}},
                 conditioning=("hand", "object"), objects=objects)
    art = read_model_file(path)
    assert art.conditioning == ("hand", "object") and art.objects == objects
    assert art.model_config["object_encoder"] == {"type": "bps", "basis": 32}
    again = build_network(art)
    x, t = torch.randn(2, 64), torch.tensor([3, 9])
    tok = net.eval().encode(_points(b=2))
    torch.testing.assert_close(again(x, t, None, None, again.encode(_points(b=2)), None), net(x, t, None, None, tok),
                               rtol=0, atol=0)
    with pytest.raises(InputError):
        ObjectEncoderConfig.from_dict({"type": "voxels"})
    assert dataclasses.asdict(ObjectEncoderConfig())["type"] == "pointnet"


def test_object_free_rows_train_exactly_as_rows_whose_object_was_dropped():
    net, cfg, sched, batch, pts, stats = _objective_setup()

    def loss(**kw):
        return object_diffusion_loss(net, batch, sched, cfg, torch.Generator().manual_seed(5), stats=stats,
                                     rotate_z=True, **kw)[0]

    none = torch.zeros(4, dtype=torch.bool)
    # every row object-free == every object dropped (the random draws do not depend on the mask)
    torch.testing.assert_close(loss(points=pts, object_drop_prob=0.0, has_object=none),
                               loss(points=pts, object_drop_prob=1.0), rtol=0, atol=0)
    # an object-free row's points are ignored; an object row's are not
    mixed = torch.tensor([True, False, True, False])
    other = pts.clone()
    other[1] = torch.randn_like(other[1])
    torch.testing.assert_close(loss(points=pts, object_drop_prob=0.0, has_object=mixed),
                               loss(points=other, object_drop_prob=0.0, has_object=mixed), rtol=0, atol=0)
    other[0] = torch.randn_like(other[0])
    assert (loss(points=pts, object_drop_prob=0.0, has_object=mixed)
            - loss(points=other, object_drop_prob=0.0, has_object=mixed)).abs() > 1e-6
    with pytest.raises(InputError, match="has_object"):
        loss(points=pts, has_object=torch.ones(3, dtype=torch.bool))
    with pytest.raises(InputError, match="has_object"):
        loss(points=pts, has_object=torch.ones(4))


def test_stack_bias_adds_the_tokens_map_to_every_stack_layer(tmp_path):
    """stack_bias: with its map's weights zeroed the network is the attention-only network with the same other
    weights (bit for bit); with them, layer i's pre-activation gains columns [i H, (i+1) H) of the token's map (checked
    against the stack written out by hand), null rows take the null token's; the model file rebuilds it."""
    torch.manual_seed(0)
    cfg = {**CONFIG, "object_encoder": {"type": "pointnet", "width": 16, "stack_bias": True}}
    net = build_model(cfg).eval()
    plain = build_model(CONFIG).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("object_stack.")})
    x, t = torch.randn(3, 64), torch.tensor([0, 50, 128])
    cond, mask = torch.randn(3, 64), torch.tensor([False, True, True])
    tok, on = net.encode(_points()), torch.tensor([True, False, True])
    with torch.no_grad():
        net.object_stack.weight.zero_()
        net.object_stack.bias.zero_()
        torch.testing.assert_close(net(x, t, cond, mask, tok, on), plain(x, t, cond, mask, tok, on), rtol=0, atol=0)
        net.object_stack.weight.normal_()
        net.object_stack.bias.normal_()
    got = net(x, t, cond, mask, tok, on)
    assert (got - plain(x, t, cond, mask, tok, on)).abs().max() > 1e-3
    # the stack by hand: the denoiser's own layers in the concatenated form, plus the token's map
    d = net.denoiser
    token = torch.where(on[:, None], tok, net.null_object.expand(3, -1))
    H, E, L = 64, 32, 3
    from interhandgen.models.denoiser import timestep_embedding

    time_tok = d.time_mlp(timestep_embedding(t, E))
    cond_tok = torch.where(mask[:, None], d.cond_mlp(torch.where(mask[:, None], cond, 0.0)), d.null_cond_embedding)
    tokens = torch.cat([torch.stack([time_tok, cond_tok, d.noisy_mlp(x)], 1), token[:, None]], 1)
    h = d.token_merge(d.encoder(tokens)[:, :3].reshape(3, -1))
    bias = net.object_stack(token)
    for i in range(L):
        pre = h @ d.hidden_proj[i].weight.t() + torch.cat([time_tok, cond_tok], 1) @ d.context_proj.weight[i * H:(i + 1) * H].t() \
            + d.context_proj.bias[i * H:(i + 1) * H] + bias[:, i * H:(i + 1) * H]
        if i in d.skip_layers:
            j = d.skip_layers.index(i)
            pre = pre + d.input_proj(x) @ d.skip_proj.weight[j * H:(j + 1) * H].t()
        h = pre.relu()
    torch.testing.assert_close(got, d.output_proj(h), rtol=1e-4, atol=1e-5)
    path = tmp_path / "m.safetensors"
    export_model(net.state_dict(), cfg, torch.zeros(2, 64), torch.ones(2, 64), path, {"train_config": {}},
                 conditioning=("hand", "object"), objects={"num_points": 64, "orientations": {}})
    again = build_network(read_model_file(path)).eval()
    torch.testing.assert_close(again(x, t, cond, mask, tok, on), got, rtol=0, atol=0)
    with pytest.raises(InputError, match="stack_bias"):
        ObjectEncoderConfig.from_dict({"stack_bias": "yes"})
